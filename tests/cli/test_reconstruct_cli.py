"""``facecli reconstruct`` from the shell: every output of one image, a video with glTF meshes,
and bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from facecli import media
from facecli.exchange import LIVE_LINK_COLUMNS
from facecli.formats import read_table
from facecli.mesh_export import read_glb
from facecli.mesh_render import face_uv
from facecli.meshio import read_mesh
from facecli.results import ARKIT_NAMES
from tests.cli.test_cli import run
from tests.conftest import ASTRONAUT, MEGAMIND

OPENFACE_HEAD = ["frame", "face_id", "timestamp", "confidence", "success", "shot", "pose_Tx", "pose_Ty", "pose_Tz",
                 "pose_Rx", "pose_Ry", "pose_Rz"]


def _texel(texture: np.ndarray, point: int, radius: int = 3) -> np.ndarray:
    """Mean RGB around a mesh point's place in the UV layout."""
    u, v = face_uv()[point] * texture.shape[0]
    x, y = int(u), int(v)
    return texture[y - radius:y + radius + 1, x - radius:x + radius + 1].reshape(-1, 3).mean(axis=0)


def test_image_with_every_output(tmp_path):
    preview = tmp_path / "astronaut.preview.png"
    result = run("reconstruct", str(ASTRONAUT), "-o", str(tmp_path), "--format", "csv", "--meshes", "obj",
                 "--texture", "--livelink", "--preview", str(preview), "-q")
    assert result.returncode == 0, result.stderr
    with (tmp_path / "astronaut.reconstruct.csv").open() as fh:
        rows = list(csv.reader(fh))
    expected = OPENFACE_HEAD + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)] + list(ARKIT_NAMES)
    assert rows[0] == expected and len(rows) == 2
    header = json.loads((tmp_path / "astronaut.reconstruct.csv.json").read_text())
    assert "tongueOut" in header["unmeasured_blendshapes"] and len(header["identities_cm"]["0"]) == 478
    table = read_table(tmp_path / "astronaut.reconstruct.csv")
    assert table.blendshape("mouthSmileLeft")[0] > 0.3 and np.isnan(table.vertices_cm).all()  # vertices: Parquet only

    mesh = read_mesh(tmp_path / "astronaut.meshes" / "face0_frame000001.obj")
    assert mesh.vertices.shape == (478, 3) and 5.5 < np.linalg.norm(mesh.vertices[468] - mesh.vertices[473]) < 7.0

    texture = media.read_image(tmp_path / "astronaut.face0.texture.png")
    forehead, pupils = _texel(texture, 151), (_texel(texture, 468), _texel(texture, 473))
    assert all(pupil.sum() < 0.6 * forehead.sum() for pupil in pupils)  # dark eyes where the layout has them
    redness = {p: _texel(texture, p)[0] - _texel(texture, p)[1] for p in (11, 16, 151, 205)}  # lips; forehead, cheek
    assert min(redness[11], redness[16]) > max(redness[151], redness[205]) + 10  # red lips where the layout has them
    obj_text = (tmp_path / "astronaut.face0.obj").read_text()
    assert "vt " in obj_text and "astronaut.face0.texture.png" in (tmp_path / "astronaut.face0.mtl").read_text()

    with (tmp_path / "astronaut.face0.livelink.csv").open() as fh:
        live = list(csv.reader(fh))
    assert tuple(live[0]) == LIVE_LINK_COLUMNS and len(live) == 2
    assert float(live[1][LIVE_LINK_COLUMNS.index("MouthSmileLeft")]) > 0.3

    image = media.read_image(ASTRONAUT)
    drawn = media.read_image(preview)
    assert drawn.shape[0] == image.shape[0] and drawn.shape[1] == image.shape[1] + image.shape[0] // 2 * 2
    assert drawn[:, image.shape[1]:].max() > 100  # the frontal view shows the shaded face


@pytest.mark.slow
def test_video_to_glb_and_resume(tmp_path):
    result = run("reconstruct", str(MEGAMIND), "-o", str(tmp_path), "--meshes", "glb", "-q")
    assert result.returncode == 0, result.stderr
    table = read_table(tmp_path / "Megamind.reconstruct.parquet")
    ids, counts = np.unique(table.face_id, return_counts=True)
    assert len(ids) >= 2
    for face_id, count in zip(ids, counts):
        glb = read_glb(tmp_path / f"Megamind.face{face_id}.glb")
        assert len(glb["targets"]) == count and np.all(np.diff(glb["times"]) > 0)
    again = run("reconstruct", str(MEGAMIND), "-o", str(tmp_path), "--meshes", "glb", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == 1


def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, bad_media):
    out = tmp_path / "out"
    for path in (bad_media["wall"], bad_media["empty"], tmp_path / "missing.png"):
        result = run("reconstruct", str(path), "-o", str(out), "--texture", "--meshes", "obj")
        said = result.stdout + result.stderr
        assert result.returncode == 1 and "Traceback" not in said and "internal error" not in said and path.name in said
    assert not any(out.iterdir())
    usage = run("reconstruct", str(ASTRONAUT), "--meshes", "fbx", "-o", str(out))
    assert usage.returncode == 2 and "--meshes" in usage.stderr
