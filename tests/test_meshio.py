"""OBJ and PLY meshes of facecli's mean face: round trips change the positions and nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecli import meshio
from facecli.errors import InputError, OutputError
from facecli.facemodel import mean_face

FACE = mean_face().vertices_mm
TRIANGLES = mean_face().triangles


def moved(vertices: np.ndarray) -> np.ndarray:
    return vertices @ np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).T + [1.5, -2.0, 600.25]


def write_obj(path: Path) -> Path:
    """The mean face with vertex colours, texture coordinates, normals and v/vt/vn faces."""
    lines = ["# mean face\n", "mtllib face.mtl\n", "o face\n"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f} 0.8 0.6 0.5\n" for x, y, z in FACE]
    lines += [f"vt {u:.4f} {v:.4f}\n" for u, v in FACE[:, :2] / 200 + 0.5]
    lines += ["vn 0 0 -1\n", "usemtl skin\n", "s 1\n"]
    lines += [f"f {a + 1}/{a + 1}/1 {b + 1}/{b + 1}/1 {c + 1}/{c + 1}/1\n" for a, b, c in TRIANGLES]
    path.write_text("".join(lines))
    return path


def ply_header(fmt: str, count: int, faces: int, xyz: str = "float") -> bytes:
    return (
        f"ply\nformat {fmt} 1.0\ncomment made by test_meshio\nelement vertex {count}\n"
        f"property {xyz} x\nproperty {xyz} y\nproperty {xyz} z\nproperty float quality\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {faces}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode()


def colours() -> np.ndarray:
    return (np.arange(len(FACE) * 3).reshape(-1, 3) % 256).astype(np.uint8)


def write_ply_ascii(path: Path) -> Path:
    rows = [f"{x:.5f} {y:.5f} {z:.5f} {i / 10:g} {r} {g} {b}\n" for i, ((x, y, z), (r, g, b)) in
            enumerate(zip(FACE, colours()))]
    faces = [f"3 {a} {b} {c}\n" for a, b, c in TRIANGLES]
    path.write_bytes(ply_header("ascii", len(FACE), len(faces)) + "".join(rows + faces).encode())
    return path


def write_ply_binary(path: Path, order: str = "<", xyz: str = "float", quads: int = 0) -> Path:
    """Binary PLY; ``quads`` of the triangles get a repeated 4th corner (a mixed list length)."""
    fmt = {"<": "binary_little_endian", ">": "binary_big_endian"}[order]
    f = order + {"float": "f4", "double": "f8"}[xyz]
    block = np.zeros(len(FACE), [("x", f), ("y", f), ("z", f), ("quality", order + "f4"),
                                 ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    block["x"], block["y"], block["z"] = FACE.T
    block["quality"] = np.arange(len(FACE)) / 10
    block["red"], block["green"], block["blue"] = colours().T
    corners = [[*tri, tri[0]][: 3 + (i < quads)] for i, tri in enumerate(TRIANGLES)]
    faces = b"".join(np.array([len(c)], "u1").tobytes() + np.array(c, order + "i4").tobytes() for c in corners)
    path.write_bytes(ply_header(fmt, len(FACE), len(TRIANGLES), xyz) + block.tobytes() + faces)
    return path


def round_trip(path: Path, tmp_path: Path) -> tuple[meshio.Mesh, meshio.Mesh, Path]:
    mesh = meshio.read_mesh(path)
    out = tmp_path / "out" / path.name
    meshio.write_mesh(out, mesh, moved(mesh.vertices))
    return mesh, meshio.read_mesh(out), out


def test_obj_round_trip_keeps_every_line_but_positions(tmp_path: Path) -> None:
    source = write_obj(tmp_path / "face.obj")
    mesh, back, out = round_trip(source, tmp_path)
    assert mesh.vertices.shape == (478, 3) and np.allclose(mesh.vertices, FACE, atol=1e-6)
    assert np.array_equal(back.vertices, moved(mesh.vertices))  # written with round-trip precision
    before, after = source.read_text().splitlines(), out.read_text().splitlines()
    assert len(before) == len(after)
    for old, new in zip(before, after):
        if old.startswith("v "):
            assert new.split()[4:] == ["0.8", "0.6", "0.5"]  # colours kept
        else:
            assert new == old


@pytest.mark.parametrize("writer", [write_ply_ascii, write_ply_binary], ids=["ascii", "binary"])
def test_ply_round_trip_keeps_properties_and_faces(tmp_path: Path, writer) -> None:
    source = writer(tmp_path / "face.ply")
    mesh, back, out = round_trip(source, tmp_path)
    assert np.allclose(mesh.vertices, FACE, atol=1e-4)
    assert np.allclose(back.vertices, moved(mesh.vertices), atol=1e-4)  # float32 positions
    old, new = source.read_bytes(), out.read_bytes()
    header_end = old.index(b"end_header\n") + len(b"end_header\n")
    assert new[:header_end] == old[:header_end]
    if writer is write_ply_ascii:
        old_lines, new_lines = old.decode().splitlines(), new.decode().splitlines()
        assert new_lines[-len(TRIANGLES):] == old_lines[-len(TRIANGLES):]
        start = old_lines.index("end_header") + 1
        for old_row, new_row in zip(old_lines[start: start + 478], new_lines[start: start + 478]):
            assert new_row.split()[3:] == old_row.split()[3:]  # quality and colour untouched
    else:
        assert len(new) == len(old) and new[-len(TRIANGLES) * 13:] == old[-len(TRIANGLES) * 13:]
        block = np.frombuffer(new, back.layout.block.dtype, 478, header_end)
        assert np.array_equal(block["red"], colours()[:, 0]) and np.allclose(block["quality"], np.arange(478) / 10)


@pytest.mark.parametrize("order, xyz, quads", [(">", "double", 0), ("<", "float", 100)],
                         ids=["big-endian-double", "mixed-quads"])
def test_binary_ply_variants(tmp_path: Path, order: str, xyz: str, quads: int) -> None:
    source = write_ply_binary(tmp_path / "face.ply", order, xyz, quads)
    mesh, back, out = round_trip(source, tmp_path)
    exact = xyz == "double"
    assert np.allclose(mesh.vertices, FACE, atol=0 if exact else 1e-4)
    assert np.allclose(back.vertices, moved(FACE), atol=1e-9 if exact else 1e-4)
    assert out.stat().st_size == source.stat().st_size


def test_truncated_and_garbage_files_name_the_path(tmp_path: Path) -> None:
    binary = write_ply_binary(tmp_path / "binary.ply", quads=10).read_bytes()
    ascii_ = write_ply_ascii(tmp_path / "ascii.ply").read_bytes()
    cases = {
        "cut_faces.ply": binary[:-7],
        "cut_vertices.ply": binary[: len(binary) // 3],
        "cut_ascii.ply": ascii_[: len(ascii_) - 500],
        "no_header.ply": b"ply\nformat ascii 1.0\nelement vertex 3\n",
        "garbage.obj": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "text.obj": b"this is not\na mesh\n",
        "bad_number.obj": b"v 1 2 3\nv 1 two 3\nv 4 5 6\n",
        "empty.obj": b"",
        "nan.obj": b"v 1 2 3\nv nan 0 0\nv 4 5 6\n",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(InputError, match=name):
            meshio.read_mesh(path)
    for path in (tmp_path / "missing.obj", tmp_path / "face.stl"):
        with pytest.raises(InputError, match=path.name):
            meshio.read_mesh(path)


def test_size_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    obj, ply = write_obj(tmp_path / "face.obj"), write_ply_binary(tmp_path / "face.ply")
    monkeypatch.setattr(meshio, "MAX_VERTICES", 477)
    for path in (obj, ply):
        with pytest.raises(InputError, match="478 vertices, over the 477 cap"):
            meshio.read_mesh(path)
    monkeypatch.setattr(meshio, "MAX_FILE_BYTES", 1000)
    with pytest.raises(InputError, match="over the"):
        meshio.read_mesh(obj)


def test_mesh_paths_lists_meshes_in_natural_order(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no .obj or .ply"):
        meshio.mesh_paths(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        meshio.mesh_paths(tmp_path / "missing")
    for name in ("frame_10.obj", "frame_2.PLY", "frame_1.obj", ".frame_3.part.obj", "notes.txt"):
        (tmp_path / name).write_text("v 0 0 0\n")
    assert [p.name for p in meshio.mesh_paths(tmp_path)] == ["frame_1.obj", "frame_2.PLY", "frame_10.obj"]


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = meshio.read_mesh(write_obj(tmp_path / "face.obj"))
    out = tmp_path / "out"

    def disk_full(self: Path, data: bytes) -> int:
        self.open("wb").write(data[:100])  # a partial write, then the failure
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OutputError, match="No space left"):
        meshio.write_mesh(out / "face.obj", mesh, moved(mesh.vertices))
    assert list(out.iterdir()) == []
    with pytest.raises(ValueError):
        meshio.write_mesh(out / "face.obj", mesh, mesh.vertices[:10])
