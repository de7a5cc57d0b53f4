"""``facecli classify`` from the shell: OpenFace-style CSV, explanations, episodes and summary,
an ONNX model, and bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from facecli.formats import read_table
from facecli.results import AUS, EXPRESSIONS, INTENSITY_AUS
from tests.cli.test_cli import run
from tests.conftest import ASTRONAUT, MEGAMIND


def test_image_to_openface_csv_with_explanation(tmp_path):
    result = run("classify", str(ASTRONAUT), "-o", str(tmp_path), "--format", "csv", "--explain", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"][0]["summary"]["0"]["dominant"] == "happiness"
    with (tmp_path / "astronaut.classify.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    head = list(rows[0])
    assert head[:6] == ["frame", "face_id", "timestamp", "confidence", "success", "shot"]
    assert head[6:8] == ["gaze_angle_x", "gaze_angle_y"] and "pose_Rz" in head and "x_67" in head and "y_0" in head
    assert [f"AU{au:02d}_r" for au in INTENSITY_AUS] == [h for h in head if h.endswith("_r")]
    assert [f"AU{au:02d}_c" for au in AUS] == [h for h in head if h.endswith("_c")]
    assert [f"emotion_{name}" for name in EXPRESSIONS] == [h for h in head if h.startswith("emotion_")]
    assert head[-3:] == ["valence", "arousal", "explanation"]
    row = rows[0]
    assert float(row["AU12_r"]) >= 1.0 and row["AU12_c"] == "1" and "happiness" in row["explanation"]
    assert read_table(tmp_path / "astronaut.classify.csv").expression("happiness")[0] > 0.5


@pytest.mark.slow
def test_video_segments_summary_and_preview(tmp_path):
    preview = tmp_path / "Megamind.preview.mp4"
    result = run("classify", str(MEGAMIND), "-o", str(tmp_path), "--segments", "--explain", "--preview",
                 str(preview), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["files"][0]["summary"]
    assert len(summary) >= 2 and all(0 < track["share"] <= 1 for track in summary.values())
    with (tmp_path / "Megamind.segments.csv").open() as fh:
        segments = list(csv.DictReader(fh))
    assert segments and all(int(s["onset_frame"]) <= int(s["apex_frame"]) <= int(s["offset_frame"]) for s in segments)
    assert all(s["expression"] in EXPRESSIONS and s["explanation"] for s in segments)
    table = read_table(tmp_path / "Megamind.classify.parquet")
    for s in segments[:5]:  # each episode's apex is where its expression peaks within it
        rows = table[(table.face_id == int(s["face_id"])) & (table.frame_index >= int(s["onset_frame"]) - 1)
                     & (table.frame_index <= int(s["offset_frame"]) - 1)]
        apex = rows.frame_index[int(np.argmax(rows.expression(s["expression"])))] + 1
        assert apex == int(s["apex_frame"])
    assert preview.exists()


def test_an_onnx_model_gives_the_expressions(tmp_path):
    pytest.importorskip("onnxruntime")
    from tests.test_onnx_model import classifier_files

    # a model that calls the reddest face anger: the astronaut's skin is red above all
    model = classifier_files(tmp_path, channel_labels=("anger", "sadness", "surprise"))
    result = run("classify", str(ASTRONAUT), "-o", str(tmp_path), "--model", str(model), "-q")
    assert result.returncode == 0, result.stderr
    table = read_table(tmp_path / "astronaut.classify.parquet")
    assert EXPRESSIONS[int(np.argmax(table.expressions[0]))] == "anger"
    assert table.au(12)[0] >= 1.0  # the AUs stay geometric
    assert table.header["settings"]["model_used"]["targets"]["anger"] == "anger"
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    bad = run("classify", str(ASTRONAUT), "-o", str(tmp_path / "x"), "--model", str(broken))
    assert bad.returncode == 1 and "broken" in bad.stdout + bad.stderr and "Traceback" not in bad.stderr


def test_bad_input_is_one_line(tmp_path, bad_media):
    out = tmp_path / "out"
    for path in (bad_media["wall"], bad_media["garbage"], tmp_path / "missing.mp4"):
        result = run("classify", str(path), "-o", str(out), "--segments")
        said = result.stdout + result.stderr
        assert result.returncode == 1 and "Traceback" not in said and "internal error" not in said and path.name in said
    assert not any(out.iterdir())
