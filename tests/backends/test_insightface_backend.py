"""insightface's backends on tiny models with buffalo_l's signatures (tiny_models.py).

No real weights can be had here: these check that files load through insightface's model_zoo,
that its pre- and post-processing put the faces where the models say, and the file formats;
the accuracy of the real SCRFD, 1k3d68 and ArcFace is not measured.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import facecli
from facecli import backends, formats
from facecli.backends import models
from facecli.errors import BackendUnavailable
from facecli.facemodel import IBUG68_FROM_MESH
from facecli.media import read_image, write_image

from ..conftest import ASTRONAUT, ffmpeg
from . import tiny_models
from .conftest import run_cli

pytest.importorskip("insightface")
pytest.importorskip("onnx")


def test_scrfd_puts_the_face_where_the_model_says(buffalo_l: Path) -> None:
    detector = backends.create("detect", "insightface", min_score=0.5, min_size=40.0)
    found = detector.detect(read_image(ASTRONAUT))
    x0, y0, x1, y1 = tiny_models.ASTRONAUT_BOX
    np.testing.assert_allclose(found.boxes_xywh, [[x0, y0, x1 - x0, y1 - y0]], atol=0.01)
    np.testing.assert_allclose(found.scores, [tiny_models.SCRFD_SCORE], atol=1e-6)
    five, six = tiny_models.ASTRONAUT_FIVE, found.keypoints_6[0]
    np.testing.assert_allclose(six[:3], five[:3], atol=0.01)  # eyes, nose tip
    np.testing.assert_allclose(six[3], five[3:].mean(axis=0), atol=0.01)  # mouth centre
    assert six[4, 0] < six[0, 0] < six[1, 0] < six[5, 0], "ears (estimated) outside the eyes, subject's right first"
    assert detector.settings()["model"] == "det_10g.onnx"


def test_scrfd_applies_min_score_min_size_and_max_faces(buffalo_l: Path) -> None:
    image = read_image(ASTRONAUT)
    assert len(backends.create("detect", "insightface", min_score=0.95).detect(image)) == 0
    assert len(backends.create("detect", "insightface", min_size=150.0).detect(image)) == 0
    assert len(backends.create("detect", "insightface", max_faces=1).detect(image)) == 1


def test_scrfd_input_grows_for_small_faces_on_dynamic_models(buffalo_l: Path) -> None:
    tiny_models.scrfd_dynamic(models.pack_dir("buffalo_l") / "det_10g.onnx")
    detector = backends.create("detect", "insightface", min_size=64.0)
    assert detector.fixed_input is None
    assert detector.input_size(720, 1280) == (640, 640)  # a 64 px face is 32 px in the network: enough
    detector.min_size = 20.0
    assert detector.input_size(3000, 4000) == (3200, 3200)  # 16 px / 20 px of 4000 px
    assert detector.input_size(300, 400) == (640, 640)  # small frames: insightface's own 640
    assert len(detector.detect(read_image(ASTRONAUT))) == 0, "every score of this model is 0"


def test_a_file_of_another_kind_is_refused_in_one_line(buffalo_l: Path) -> None:
    folder = models.pack_dir("buffalo_l")
    (folder / "det_10g.onnx").write_bytes((folder / "w600k_r50.onnx").read_bytes())
    with pytest.raises(BackendUnavailable, match=r"det_10g.onnx is not a SCRFD-10G face detector model") as error:
        backends.create("detect", "insightface")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("backend", ["insightface", "insightface106"])
def test_the_68_points_land_where_the_model_puts_them(buffalo_l: Path, backend: str) -> None:
    session = backends.create("landmarks", backend).open_session(video=False)
    roi = np.array([130.0, 30.0, 200.0, 200.0])
    mesh = session.fit(read_image(ASTRONAUT), roi)
    assert mesh.shape == (478, 3)
    # insightface crops 1.5 x the box it is given (half the roi): [-1, 1] spans 0.75 roi.
    expected = roi[:2] + roi[2] / 2 + tiny_models.face_68()[:, :2] * 0.375 * roi[2]
    np.testing.assert_allclose(mesh[IBUG68_FROM_MESH, :2], expected, atol=0.01)


@pytest.mark.parametrize(("backend", "weights"), [("insightface", "1k3d68.onnx"), ("insightface106", "2d106det.onnx")])
def test_landmarks_end_to_end_fill_the_default_backends_columns(buffalo_l: Path, tmp_path: Path, backend: str,
                                                                 weights: str) -> None:
    marks = facecli.landmarks(ASTRONAUT, backend=backend, detector="insightface")
    assert len(marks) == 1 and marks.header["backend"] == backend
    assert marks.header["settings"]["model"] == {"model": weights}
    assert 0 < marks.confidence[0] <= 1 and np.isfinite(marks.translation_mm).all()
    result = subprocess.run([sys.executable, "-m", "facecli", "landmarks", str(ASTRONAUT), "--backend", backend,
                             "--detector", "insightface", "--format", "csv", "-o", str(tmp_path), "-q",
                             "--model-dir", str(buffalo_l)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    table = formats.read_table(tmp_path / "astronaut.landmarks.csv")
    header = (tmp_path / "astronaut.landmarks.csv").read_text().splitlines()[0].split(",")
    assert header[header.index("x_0"):header.index("x_0") + 2] == ["x_0", "x_1"]
    np.testing.assert_allclose(table.landmarks_68, marks.landmarks_68, atol=0.06)  # CSV keeps 0.1 px


def test_detect_embed_writes_one_unit_vector_per_track(buffalo_l: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "detect", str(ASTRONAUT), "--backend", "insightface", "--embed",
                             "-o", str(tmp_path), "-q")
    assert code == 0, err
    path = tmp_path / "astronaut.faces.parquet"
    assert pq.read_schema(path).field("embedding").type.list_size == 512
    faces = formats.read_table(path)
    assert faces.embedding.shape == (1, 512) and abs(np.linalg.norm(faces.embedding[0]) - 1) < 1e-5
    assert faces.header["settings"]["embedder"] == {"model": "w600k_r50.onnx"}
    code, out, err = run_cli(monkeypatch, capsys, "detect", str(ASTRONAUT), "--backend", "insightface", "--embed",
                             "-o", str(tmp_path), "-q", "--format", "csv")
    csv_faces = formats.read_table(tmp_path / "astronaut.faces.csv")
    np.testing.assert_allclose(csv_faces.embedding, faces.embedding, atol=1e-5)
    plain = facecli.detect(ASTRONAUT, backend="insightface")
    assert plain.embedding is None, "no embedding column unless asked for"


@pytest.fixture()
def three_shots(tmp_path: Path) -> Path:
    """A clip: the astronaut, a cut to its negative, a cut back to the astronaut (6 frames each)."""
    image = read_image(ASTRONAUT)
    for i, frame in enumerate([image] * 6 + [255 - image] * 6 + [image] * 6):
        write_image(tmp_path / f"f{i:03d}.png", frame)
    path = tmp_path / "shots.mp4"
    ffmpeg("-framerate", "10", "-i", str(tmp_path / "f%03d.png"), "-pix_fmt", "yuv420p", str(path))
    return path


def test_merge_tracks_gives_the_same_face_its_earlier_id_across_cuts(buffalo_l: Path, three_shots: Path) -> None:
    plain = facecli.detect(three_shots, backend="insightface", embed=True)
    shots = np.unique(plain.shot)
    assert len(shots) == 3, "two cuts"
    ids = [np.unique(plain.face_id[plain.shot == s]).tolist() for s in shots]
    assert all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == 3, "every cut starts a new id"
    merged = facecli.detect(three_shots, backend="insightface", merge_tracks=True)
    first, negative, again = ([int(merged.face_id[merged.shot == s][0])] for s in shots)
    assert first == again != negative, "the negative image's vector points the other way"
    np.testing.assert_allclose(merged.embedding, plain.embedding, atol=1e-6)
    assert merged.header["settings"]["merge_tracks"] is True


def test_missing_weights_fail_before_the_batch_in_one_line(model_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "facecli", "detect", str(ASTRONAUT), "--backend", "insightface",
                             "-o", str(tmp_path / "out"), "--model-dir", str(model_dir)],
                            capture_output=True, text=True, timeout=300)
    folder = model_dir / "insightface" / "models" / "buffalo_l"
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        f"error: detect backend 'insightface' cannot run: missing det_10g.onnx in {folder}; "
        f"get it with: facecli models download buffalo_l --model-dir {model_dir}")
    assert not (tmp_path / "out" / "astronaut.faces.parquet").exists()


def test_embed_needs_its_own_file(buffalo_l: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    (models.pack_dir("buffalo_l") / "w600k_r50.onnx").unlink()
    code, out, err = run_cli(monkeypatch, capsys, "detect", str(ASTRONAUT), "--merge-tracks", "-o", str(tmp_path))
    assert code == 2 and err.count("\n") == 1
    assert "embed backend 'insightface' cannot run: missing w600k_r50.onnx" in err


def test_the_106_to_68_table_follows_the_2d106_layout() -> None:
    """Each iBUG group takes its points from the same group of 2d106det's layout, the subject's
    right side from the image-left half; no point is used twice."""
    from facecli.backends.insightface_backend import IBUG68_FROM_2D106 as table

    assert len(set(table.tolist())) == 68 and table.min() >= 0 and table.max() < 106
    groups = {  # iBUG range -> 2d106 indices it may use
        range(0, 17): range(0, 33), range(17, 22): range(43, 52), range(22, 27): range(97, 106),
        range(27, 36): range(72, 87), range(36, 42): range(33, 43), range(42, 48): range(87, 97),
        range(48, 68): range(52, 72),
    }
    for ibug, allowed in groups.items():
        assert all(table[i] in allowed for i in ibug), f"iBUG {ibug} leaves its group"
    assert table[8] == 0, "the chin"
    assert {table[36], table[39]} == {35, 39} and {table[42], table[45]} == {89, 93}, "eye corners"
