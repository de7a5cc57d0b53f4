"""Landmarks files streamed beside their video."""

from __future__ import annotations

import functools

import numpy as np

from facecli import formats
from facecli.stages import tracks
from facecli.stages.landmarks import LandmarkOptions, landmarks_file
from tests.conftest import MEGAMIND


def test_frames_get_all_their_rows_across_chunk_boundaries(tmp_path, monkeypatch):
    marks_path = tmp_path / "Megamind.landmarks.parquet"
    landmarks_file(MEGAMIND, marks_path, LandmarkOptions())
    table = formats.read_table(marks_path)
    assert np.bincount(table.frame_index).max() >= 2  # frames with several faces: some straddle a cut below
    monkeypatch.setattr(tracks.formats, "iter_batches", functools.partial(formats.iter_batches, batch_rows=7))
    seen = []
    for frame, rows in tracks.frames_with_rows(marks_path, MEGAMIND):
        assert (rows.frame_index == frame.index).all()
        seen.append(rows)
    streamed = type(table).concat(seen)
    assert len(seen) == 270 and len(streamed) == len(table)
    assert (streamed.face_id == table.face_id).all() and np.allclose(streamed.landmarks_478, table.landmarks_478)
