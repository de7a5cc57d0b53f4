"""``facecli stabilize`` from the shell: video mode and mesh mode."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from facecli import media
from facecli.facemodel import RIGID_INDICES, mean_face
from facecli.formats import read_table
from facecli.meshio import read_mesh
from tests.cli.test_cli import run
from tests.conftest import ASTRONAUT, MEGAMIND
from tests.test_rigid_align import synthetic_set


def write_obj(path, vertices: np.ndarray) -> None:
    faces = mean_face().triangles
    path.write_text("".join(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in vertices)
                    + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces))


def test_video_mode_frame_with_fill_borders(tmp_path):
    result = run("stabilize", str(MEGAMIND), "-o", str(tmp_path), "--mode", "frame", "--border", "fill", "-q")
    assert result.returncode == 0, result.stderr
    info = media.probe(tmp_path / "Megamind.stabilized.mp4")
    assert (info.width, info.height) == (720, 528) and info.frame_count == 270
    table = read_table(tmp_path / "Megamind.stabilize.parquet")
    assert table.header["settings"]["mode"] == "frame" and len(table) == 270


def test_resume_redoes_a_job_whose_video_is_missing(tmp_path):
    first = run("stabilize", str(ASTRONAUT), "-o", str(tmp_path), "--json")
    video = tmp_path / "astronaut.stabilized.mp4"
    assert json.loads(first.stdout)["done"] == 1 and video.exists()
    assert json.loads(run("stabilize", str(ASTRONAUT), "-o", str(tmp_path), "--json").stdout)["skipped"] == 1
    video.unlink()  # the transforms alone do not make the job done
    again = run("stabilize", str(ASTRONAUT), "-o", str(tmp_path), "--json")
    assert json.loads(again.stdout)["done"] == 1 and video.exists()


def test_mesh_mode_aligns_the_skulls(tmp_path):
    synth = synthetic_set(8, seed=5)
    folder = tmp_path / "meshes"
    folder.mkdir()
    for i, vertices in enumerate(synth.meshes):
        write_obj(folder / f"frame{i}.obj", vertices)
    result = run("stabilize", str(folder), "--mesh", "-o", str(tmp_path / "out"), "--ref", "frame3.obj", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["meshes"] == 8
    reference = read_mesh(folder / "frame3.obj").vertices[RIGID_INDICES]
    for i in range(8):
        aligned = read_mesh(tmp_path / "out" / f"frame{i}.obj").vertices[RIGID_INDICES]
        assert np.linalg.norm(aligned - reference, axis=1).mean() < 1.0  # mm, despite the expressions
    with (tmp_path / "out" / "transforms.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["mesh"] for r in rows] == [f"frame{i}.obj" for i in range(8)]


def test_mesh_mode_errors(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_obj(folder / "a.obj", mean_face().vertices_mm)
    write_obj(folder / "b.obj", mean_face().vertices_mm[:468])
    mixed = run("stabilize", str(folder), "--mesh", "-o", str(tmp_path / "out"))
    assert mixed.returncode == 1 and "mixed topology" in mixed.stderr and "Traceback" not in mixed.stderr
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()
    empty = run("stabilize", str(tmp_path / "empty"), "--mesh", "-o", str(tmp_path / "out2"))
    assert empty.returncode == 1 and "empty" in empty.stderr
    into_itself = run("stabilize", str(folder), "--mesh", "-o", str(folder))
    assert into_itself.returncode == 2


@pytest.mark.slow
def test_video_mode_all_faces_in_frame_mode_resumes(tmp_path):
    """One pair per track, named by face id; the index proves the job done for resume."""
    first = run("stabilize", str(MEGAMIND), "-o", str(tmp_path), "--all-faces", "--mode", "frame", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)["files"][0]
    assert report["status"] == "done" and report["output"] == str(tmp_path / "Megamind.tracks.stabilize.parquet")
    tracks = read_table(tmp_path / "Megamind.tracks.stabilize.parquet").header["tracks"]
    assert report["faces"] == len(tracks) >= 2
    for track in tracks:
        table = read_table(tmp_path / f"Megamind.face{track['face_id']}.stabilize.parquet")
        info = media.probe(tmp_path / track["video"])
        assert (info.width, info.height, info.frame_count) == (720, 528, len(table))
        assert table.header["settings"]["mode"] == "frame"
    assert not (tmp_path / "Megamind.stabilize.parquet").exists()
    again = run("stabilize", str(MEGAMIND), "-o", str(tmp_path), "--all-faces", "--mode", "frame", "--json")
    assert json.loads(again.stdout)["files"][0]["status"] == "skipped"


def test_all_faces_usage_errors(tmp_path):
    both = run("stabilize", str(MEGAMIND), "-o", str(tmp_path / "out"), "--all-faces", "--face-id", "1")
    assert both.returncode == 2 and both.stderr.strip().count("\n") == 0 and "--all-faces" in both.stderr
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(MEGAMIND, tmp_path / folder)
    same_stem = run("stabilize", str(tmp_path / "a" / "Megamind.avi"), str(tmp_path / "b" / "Megamind.avi"), "-o",
                    str(tmp_path / "out"), "--all-faces")
    assert same_stem.returncode == 2 and "Megamind.tracks.stabilize.parquet" in same_stem.stderr
    assert not any((tmp_path / "out").glob("*"))


@pytest.mark.parametrize("args, needs", [(["--ref", "a.obj"], "--mesh"), (["--sequence"], "--mesh"),
                                         (["--border", "fill"], "--mode frame")])
def test_options_of_another_mode_are_usage_errors_not_ignored(tmp_path, args, needs):
    result = run("stabilize", str(MEGAMIND), "-o", str(tmp_path), *args)
    assert result.returncode == 2 and f"only acts with {needs}" in result.stderr and not list(tmp_path.iterdir())
