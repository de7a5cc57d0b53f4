from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import facecli
from facecli import formats
from facecli.results import Faces, Landmarks


def _landmarks(n: int, seed: int = 0) -> Landmarks:
    rng = np.random.default_rng(seed)
    return Landmarks(
        frame_index=np.arange(n), timestamp_s=np.arange(n) / 25, face_id=np.arange(n) % 2, shot=np.zeros(n),
        confidence=rng.random(n), box_xywh=rng.random((n, 4)) * 100, landmarks_478=rng.random((n, 478, 3)) * 500,
        rotation_rad=rng.random((n, 3)) - 0.5, translation_mm=rng.random((n, 3)) * 900,
        landmarks_68_mm=rng.random((n, 68, 3)) * 100,
    )


def _faces(n: int) -> Faces:
    rng = np.random.default_rng(1)
    return Faces(frame_index=np.arange(n), timestamp_s=np.arange(n) / 25, face_id=np.zeros(n), shot=np.zeros(n),
                 score=rng.random(n), box_xywh=rng.random((n, 4)) * 100, keypoints_6=rng.random((n, 6, 2)) * 100)


HEADER = {"format": "facecli.landmarks", "source": {"path": "/x.mp4"}, "settings": {}}


def _write(rows, path: Path, stage: str) -> None:
    writer = formats.TableWriter(path, stage, {**HEADER, "format": f"facecli.{stage}"})
    writer.write(rows[: len(rows) // 2])
    writer.write(rows[len(rows) // 2 :])
    writer.close(frames_processed=len(rows))


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_landmarks_round_trip(tmp_path: Path, suffix: str) -> None:
    rows = _landmarks(10)
    path = tmp_path / f"clip.landmarks.{suffix}"
    _write(rows, path, "landmarks")
    back = facecli.read_table(path)
    assert isinstance(back, Landmarks) and len(back) == 10
    # Parquet keeps float32; CSV keeps OpenFace's printed precision (mesh 2 decimals, R 3, mm 1).
    tol = {"parquet": (1e-4, 1e-6, 1e-4), "csv": (0.006, 5e-4, 0.06)}[suffix]
    np.testing.assert_array_equal(back.frame_index, rows.frame_index)
    np.testing.assert_allclose(back.landmarks_478, rows.landmarks_478, atol=tol[0])
    np.testing.assert_allclose(back.rotation_rad, rows.rotation_rad, atol=tol[1])
    np.testing.assert_allclose(back.landmarks_68_mm, rows.landmarks_68_mm, atol=tol[2])
    assert back.header["rows"] == 10 and back.header["complete"] and back.header["frames_processed"] == 10


def test_csv_speaks_openface(tmp_path: Path) -> None:
    rows = _landmarks(3)
    path = tmp_path / "clip.landmarks.csv"
    _write(rows, path, "landmarks")
    with path.open() as fh:
        table = list(csv.DictReader(fh))
    head = list(table[0])
    assert head[:5] == ["frame", "face_id", "timestamp", "confidence", "success"]
    for name in ("pose_Tx", "pose_Ry", "x_0", "x_67", "y_67", "X_0", "Z_67"):
        assert name in head
    assert head.index("x_67") + 1 == head.index("y_0"), "all x first, then all y"
    assert [r["frame"] for r in table] == ["1", "2", "3"], "frames numbered from 1 as OpenFace"
    assert table[0]["timestamp"] == "0.000" and len(table[0]["confidence"].split(".")[1]) == 2
    assert float(table[1]["x_30"]) == pytest.approx(rows.landmarks_68[1, 30, 0], abs=0.05)
    assert float(table[1]["pose_Rx"]) == pytest.approx(rows.rotation_rad[1, 0], abs=5e-4)


def test_parquet_header_and_list_column(tmp_path: Path) -> None:
    path = tmp_path / "clip.landmarks.parquet"
    _write(_landmarks(4), path, "landmarks")
    meta = json.loads(pq.read_metadata(path).metadata[b"facecli"])
    assert meta["format"] == "facecli.landmarks" and meta["complete"] is True
    schema = pq.read_schema(path)
    assert schema.field("landmarks_478").type.list_size == 478 * 3
    assert "x_0" in schema.names and "pose_Rz" in schema.names


def test_faces_round_trip_and_detect_columns(tmp_path: Path) -> None:
    rows = _faces(5)
    path = tmp_path / "clip.faces.csv"
    _write(rows, path, "faces")
    head = path.read_text().splitlines()[0].split(",")
    assert head[:8] == ["frame", "face_id", "timestamp", "confidence", "shot", "x", "y", "w"]
    assert "right_eye_x" in head and "left_ear_y" in head
    back = facecli.read_table(path)
    np.testing.assert_allclose(back.box_xywh, rows.box_xywh, atol=0.06)


def test_a_killed_write_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    path = tmp_path / "clip.landmarks.parquet"
    with pytest.raises(KeyboardInterrupt):
        with formats.TableWriter(path, "landmarks", dict(HEADER)) as writer:
            writer.write(_landmarks(3))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_files_without_a_complete_header_are_rejected(tmp_path: Path) -> None:
    csv_without_sidecar = tmp_path / "a.landmarks.csv"
    csv_without_sidecar.write_text("frame,face_id\n1,0\n")
    foreign = tmp_path / "b.faces.parquet"
    pq.write_table(pq.read_table(_tiny_parquet(tmp_path)), foreign)
    for path in (csv_without_sidecar, foreign, tmp_path / "missing.faces.parquet"):
        with pytest.raises(facecli.InputError, match=path.name):
            formats.read_header(path)


def test_a_stage_file_under_the_wrong_name_is_an_input_error(tmp_path: Path) -> None:
    landmarks = tmp_path / "clip.landmarks.parquet"
    _write(_landmarks(2), landmarks, "landmarks")
    renamed = landmarks.rename(tmp_path / "clip.faces.parquet")
    with pytest.raises(facecli.InputError, match="holds landmarks but is named as faces"):
        facecli.read_table(renamed)


def _tiny_parquet(folder: Path) -> Path:
    import pyarrow as pa

    path = folder / "tiny.parquet"
    pq.write_table(pa.table({"frame": [1]}), path)
    return path


def test_output_names_drop_the_stage_part_of_stage_files(tmp_path: Path) -> None:
    assert formats.output_path(Path("/v/clip.mp4"), None, "faces", "parquet") == Path("/v/clip.faces.parquet")
    assert formats.output_path(Path("/v/clip.faces.parquet"), tmp_path, "landmarks", "csv") == \
        tmp_path / "clip.landmarks.csv"
    assert formats.output_path(Path("a.b.mp4"), None, "faces", "csv") == Path("a.b.faces.csv")


def test_streamed_batches_cover_every_row(tmp_path: Path) -> None:
    path = tmp_path / "clip.landmarks.parquet"
    _write(_landmarks(50), path, "landmarks")
    sizes = [len(b) for b in formats.iter_batches(path, batch_rows=16)]
    assert sum(sizes) == 50 and max(sizes) <= 25
