"""The first read shared by reconstruct and classify: one identity per face track."""

from __future__ import annotations

import numpy as np

from facecli import formats
from facecli.stages.expression import camera_of, identities, metric_rows
from facecli.stages.landmarks import LandmarkOptions, landmarks_file
from tests.conftest import MEGAMIND


def test_identities_over_shots(tmp_path):
    """The example has several shots; each track's identity (finished at its shot's end) is the
    median of its faces, and every track has one."""
    path = tmp_path / "m.landmarks.parquet"
    landmarks_file(MEGAMIND, path, LandmarkOptions())
    table = formats.read_table(path)
    assert np.unique(table.shot).size >= 3
    camera = camera_of(formats.read_header(path))
    found = identities(path, camera)
    ids, counts = np.unique(table.face_id, return_counts=True)
    assert sorted(found) == ids.tolist()
    assert [found[i].frames_seen for i in ids.tolist()] == counts.tolist()
    faces = metric_rows(table, camera)
    for face_id, count in zip(ids.tolist(), counts.tolist()):
        if count <= 256:  # every face of the track is in its sample
            expected = np.median(faces[table.face_id == face_id].astype(np.float32), axis=0)
            assert np.allclose(found[face_id].face_mm, expected, atol=1e-4)
