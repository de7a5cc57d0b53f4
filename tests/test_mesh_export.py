"""New meshes from arrays: OBJ and PLY read back through meshio, GLB sequences through read_glb."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from facecli import mesh_export, meshio
from facecli.errors import OutputError
from facecli.facemodel import mean_face
from facecli.mesh_export import GlbSequenceWriter, read_glb, write_obj, write_ply

FACE_MM = mean_face().vertices_mm
TRIANGLES = mean_face().triangles
FACE_CM = FACE_MM / 10
NOSE_TIP, FOREHEAD, CHIN = 4, 10, 152
JAW = np.array([58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288])  # iBUG jaw points 3-13


def frames() -> tuple[list[np.ndarray], list[float]]:
    """Three frames of the mean face in cm: at rest, jaw down 0.5 cm, jaw down 1 cm and forward."""
    opened = FACE_CM.copy()
    opened[JAW, 1] += 0.5
    wide = FACE_CM.copy()
    wide[JAW] += [0.0, 1.0, -0.2]
    return [FACE_CM.copy(), opened, wide], [0.0, 0.04, 0.08]


def obj_faces(path: Path) -> np.ndarray:
    """0-based vertex indices of the ``f`` lines (the part before any slash)."""
    lines = [line.split()[1:] for line in path.read_text().splitlines() if line.startswith("f ")]
    return np.array([[int(corner.split("/")[0]) - 1 for corner in line] for line in lines])


def test_obj_round_trip_through_meshio(tmp_path: Path) -> None:
    out = tmp_path / "out" / "face.obj"
    write_obj(out, FACE_MM, TRIANGLES)
    back = meshio.read_mesh(out)
    np.testing.assert_allclose(back.vertices, FACE_MM, rtol=1e-5, atol=1e-12)
    assert np.array_equal(obj_faces(out), TRIANGLES)
    assert "vt " not in out.read_text() and not out.with_suffix(".mtl").exists()
    assert [p.name for p in out.parent.iterdir()] == ["face.obj"]  # no temporary file left


def test_ply_round_trip_through_meshio(tmp_path: Path) -> None:
    out = tmp_path / "face.ply"
    write_ply(out, FACE_MM, TRIANGLES)
    back = meshio.read_mesh(out)
    np.testing.assert_allclose(back.vertices, FACE_MM, rtol=1e-5)
    data = out.read_bytes()
    assert data.startswith(b"ply\nformat binary_little_endian 1.0\n")
    faces = np.frombuffer(back.layout.tail, [("count", "u1"), ("corners", "<i4", (3,))])
    assert (faces["count"] == 3).all() and np.array_equal(faces["corners"], TRIANGLES)
    assert len(data) == data.index(b"end_header\n") + 11 + len(FACE_MM) * 12 + len(TRIANGLES) * 13


def test_obj_with_uv_writes_vt_lines_and_a_material_naming_the_png(tmp_path: Path) -> None:
    uv = FACE_MM[:, :2] / 200 + 0.5
    out = tmp_path / "meshes" / "face 01.obj"
    png = tmp_path / "textures" / "face.png"
    write_obj(out, FACE_MM, TRIANGLES, uv=uv, texture_png=png)
    lines = out.read_text().splitlines()
    assert "mtllib face_01.mtl" in lines and "usemtl face_01" in lines
    vt = np.array([[float(x) for x in line.split()[1:]] for line in lines if line.startswith("vt ")])
    np.testing.assert_allclose(vt, uv, rtol=1e-5)
    faces = [line for line in lines if line.startswith("f ")]
    assert faces[0] == "f {0}/{0} {1}/{1} {2}/{2}".format(*(TRIANGLES[0] + 1))
    mtl = (tmp_path / "meshes" / "face_01.mtl").read_text().splitlines()
    assert "newmtl face_01" in mtl and "map_Kd ../textures/face.png" in mtl
    np.testing.assert_allclose(meshio.read_mesh(out).vertices, FACE_MM, rtol=1e-5, atol=1e-12)


def test_bad_meshes_are_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="0..477"):
        write_ply(tmp_path / "a.ply", FACE_MM, TRIANGLES + 20)
    with pytest.raises(ValueError, match="finite"):
        write_obj(tmp_path / "a.obj", np.full_like(FACE_MM, np.nan), TRIANGLES)
    with pytest.raises(ValueError, match="needs uv"):
        write_obj(tmp_path / "a.obj", FACE_MM, TRIANGLES, texture_png="face.png")
    with pytest.raises(ValueError, match=r"\(478, 2\) uv"):
        write_obj(tmp_path / "a.obj", FACE_MM, TRIANGLES, uv=FACE_MM, texture_png="face.png")
    with pytest.raises(ValueError, match="integer triangles"):
        GlbSequenceWriter(tmp_path / "a.glb", FACE_CM, TRIANGLES.astype(float))
    assert list(tmp_path.iterdir()) == []


def test_glb_sequence_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "take.glb"
    vertices, times = frames()
    with GlbSequenceWriter(out, FACE_CM, TRIANGLES) as writer:
        for frame, time_s in zip(vertices, times):
            writer.add(frame, time_s)
    glb = read_glb(out)
    gltf = glb["json"]
    assert gltf["asset"]["version"] == "2.0"
    to_metres = np.array([0.01, -0.01, -0.01])
    np.testing.assert_allclose(glb["positions"], FACE_CM * to_metres, rtol=1e-6, atol=1e-9)
    assert np.array_equal(glb["triangles"], TRIANGLES)
    assert len(glb["targets"]) == 3
    for frame, target in zip(vertices, glb["targets"]):
        np.testing.assert_allclose(glb["positions"] + target, frame * to_metres, atol=1e-8)
    np.testing.assert_allclose(glb["targets"][1][JAW], [[0, -0.005, 0]] * len(JAW), atol=1e-8)
    np.testing.assert_array_equal(glb["times"], np.float32(times))
    assert np.array_equal(glb["weights"], np.eye(3))  # at keyframe k, target k alone
    mesh = gltf["meshes"][0]
    assert mesh["extras"]["targetNames"] == ["frame_00000", "frame_00001", "frame_00002"]
    accessors = gltf["accessors"]
    sampler = gltf["animations"][0]["samplers"][0]
    assert sampler["interpolation"] == "STEP"
    assert gltf["animations"][0]["channels"][0]["target"] == {"node": 0, "path": "weights"}
    assert accessors[sampler["output"]]["count"] == 9 and accessors[sampler["input"]]["count"] == 3
    assert accessors[mesh["primitives"][0]["indices"]]["count"] == TRIANGLES.size
    for target in [mesh["primitives"][0]["attributes"], *mesh["primitives"][0]["targets"]]:
        accessor = accessors[target["POSITION"]]
        assert accessor["count"] == 478 and len(accessor["min"]) == len(accessor["max"]) == 3


def test_glb_axes_face_the_viewer_with_the_forehead_up(tmp_path: Path) -> None:
    out = tmp_path / "face.glb"
    GlbSequenceWriter(out, FACE_MM, TRIANGLES, unit_scale=0.001).close()
    glb = read_glb(out)
    positions, triangles = glb["positions"], glb["triangles"]
    assert positions[:, 2].argmax() == NOSE_TIP  # +z is towards the viewer
    assert positions[FOREHEAD, 1] > positions[CHIN, 1]  # +y is up
    assert 0.12 < np.ptp(positions[:, 1]) < 0.3  # metres
    a, b, c = (positions[triangles[:, i]] for i in range(3))
    assert (np.cross(b - a, c - a)[:, 2] > 0).mean() > 0.95  # counter-clockwise seen by the viewer: front faces


def test_glb_without_frames_holds_the_base_mesh_alone(tmp_path: Path) -> None:
    out = tmp_path / "face.glb"
    with GlbSequenceWriter(out, FACE_CM, TRIANGLES) as writer:
        assert writer.frames == 0
    glb = read_glb(out)
    assert "animations" not in glb["json"] and "targets" not in glb["json"]["meshes"][0]["primitives"][0]
    assert glb["targets"] == [] and glb["times"].shape == (0,) and glb["weights"].shape == (0, 0)


def test_glb_file_layout_follows_the_spec(tmp_path: Path) -> None:
    out = tmp_path / "take.glb"
    with GlbSequenceWriter(out, FACE_CM, TRIANGLES) as writer:
        for frame, time_s in zip(*frames()):
            writer.add(frame, time_s)
    data = out.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data)
    json_length, json_kind = struct.unpack_from("<II", data, 12)
    bin_length, bin_kind = struct.unpack_from("<II", data, 20 + json_length)
    assert (magic, version, length, json_kind, bin_kind) == (b"glTF", 2, len(data), 0x4E4F534A, 0x004E4942)
    assert json_length % 4 == 0 and bin_length % 4 == 0 and 28 + json_length + bin_length == len(data)
    gltf = read_glb(out)["json"]
    assert gltf["buffers"] == [{"byteLength": bin_length}]
    for accessor in gltf["accessors"]:
        view = gltf["bufferViews"][accessor["bufferView"]]
        assert (view["byteOffset"] + accessor["byteOffset"]) % 4 == 0
    assert sum(view["byteLength"] for view in gltf["bufferViews"]) == bin_length


def test_glb_weights_are_written_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mesh_export, "COPY_BLOCK_BYTES", 64)  # 4 rows of 4 floats a block, offsets 64 bytes at a time
    out = tmp_path / "take.glb"
    with GlbSequenceWriter(out, FACE_CM, TRIANGLES) as writer:
        for k in range(11):
            writer.add(FACE_CM + [0, 0.01 * k, 0], k / 25)
    glb = read_glb(out)
    assert np.array_equal(glb["weights"], np.eye(11))
    np.testing.assert_allclose([t[:, 1].mean() for t in glb["targets"]], -1e-4 * np.arange(11), atol=1e-9)


def test_glb_refuses_bad_frames_and_too_many(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mesh_export, "MAX_GLB_FRAMES", 2)
    with GlbSequenceWriter(tmp_path / "take.glb", FACE_CM, TRIANGLES) as writer:
        writer.add(FACE_CM, 0.0)
        with pytest.raises(ValueError, match="increasing"):
            writer.add(FACE_CM, 0.0)
        with pytest.raises(ValueError, match=r"\(478, 3\) vertices"):
            writer.add(FACE_CM[:10], 1.0)
        writer.add(FACE_CM, 1.0)
        with pytest.raises(ValueError, match="over 2 frames.*frames².*per frame"):
            writer.add(FACE_CM, 2.0)
    assert len(read_glb(tmp_path / "take.glb")["targets"]) == 2
    with pytest.raises(ValueError, match="closed"):
        writer.add(FACE_CM, 3.0)
    monkeypatch.setattr(mesh_export, "MAX_GLB_BYTES", 90_000)  # room for 1 frame of 478 vertices
    with GlbSequenceWriter(tmp_path / "small.glb", FACE_CM, TRIANGLES) as writer:
        with pytest.raises(ValueError, match="2 frames of 478 vertices would pass the GLB's 4 GB limit"):
            for k in range(2):
                writer.add(FACE_CM, k)
    assert len(read_glb(tmp_path / "small.glb")["targets"]) == 1


def test_failed_glb_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "take.glb"
    with pytest.raises(RuntimeError, match="boom"):
        with GlbSequenceWriter(out, FACE_CM, TRIANGLES) as writer:
            writer.add(FACE_CM, 0.0)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mesh_export.shutil, "copyfileobj", disk_full)
    writer = GlbSequenceWriter(out, FACE_CM, TRIANGLES)
    writer.add(FACE_CM, 0.0)
    with pytest.raises(OutputError, match="No space left"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("blocker", ["read-only folder", "file in the way"])
def test_unwritable_outputs_raise_output_error(tmp_path: Path, blocker: str) -> None:
    if blocker == "read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o555)
    else:
        (tmp_path / "locked").write_text("")
        folder = tmp_path / "locked" / "out"
    with pytest.raises(OutputError, match="choose another"):
        GlbSequenceWriter(folder / "take.glb", FACE_CM, TRIANGLES)
    with pytest.raises(OutputError, match="choose another"):
        write_obj(folder / "face.obj", FACE_MM, TRIANGLES)
    with pytest.raises(OutputError, match="choose another"):
        write_ply(folder / "face.ply", FACE_MM, TRIANGLES)


def test_read_glb_refuses_truncated_and_foreign_files(tmp_path: Path) -> None:
    out = tmp_path / "take.glb"
    with GlbSequenceWriter(out, FACE_CM, TRIANGLES) as writer:
        writer.add(FACE_CM, 0.0)
    data = out.read_bytes()
    bin_at = 20 + struct.unpack_from("<I", data, 12)[0]
    bin_length = struct.unpack_from("<I", data, bin_at)[0]
    cases = {
        data[:-4]: "truncated",
        data[:8]: "shorter than the 12-byte header",
        b"PK\x03\x04" + data[4:]: "not a GLB",
        data[:4] + struct.pack("<I", 1) + data[8:]: "version 1",
        data[:bin_at] + struct.pack("<I", bin_length + 4) + data[bin_at + 4:]: "runs past the end",
        data[:8] + struct.pack("<I", len(data) + 4) + data[12:] + bytes(4): "inside a chunk header",
    }
    for broken, message in cases.items():
        out.write_bytes(broken)
        with pytest.raises(ValueError, match=message):
            read_glb(out)
