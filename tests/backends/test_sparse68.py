"""68 measured points in the 478-point layout (facecli.backends.sparse68)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from facecli.backends.sparse68 import mesh_from_68
from facecli.facemodel import IBUG68_FROM_MESH, mean_face
from facecli.geometry import camera_matrix
from facecli.stages.landmarks import pose_and_metrics


def _posed(yaw: float, pitch: float = 8.0, roll: float = -5.0) -> np.ndarray:
    rotation = Rotation.from_euler("xyz", [pitch, yaw, roll], degrees=True).as_matrix()
    return 2.5 * mean_face().vertices_mm @ rotation.T + [320.0, 240.0, 0.0]


@pytest.mark.parametrize("yaw", [0.0, 25.0, -40.0])
def test_the_filled_mesh_keeps_the_68_points_and_the_head_pose(yaw: float) -> None:
    truth = _posed(yaw)
    measured = truth[IBUG68_FROM_MESH, :2] + np.random.default_rng(0).normal(0, 0.5, (68, 2))
    mesh = mesh_from_68(measured)
    np.testing.assert_array_equal(mesh[IBUG68_FROM_MESH, :2], measured)
    camera = camera_matrix(640, 480)
    rotation, *_ = pose_and_metrics(mesh, camera)
    expected, *_ = pose_and_metrics(truth, camera)
    assert np.degrees(np.abs(rotation - expected)).max() < 3.0
    assert np.abs(mesh[:, :2] - truth[:, :2]).max() < 5.0, "the other points follow the face"


def test_3d_points_keep_their_depth_whichever_way_the_axis_points() -> None:
    truth = _posed(15.0)
    for sign in (1, -1):
        mesh = mesh_from_68(truth[IBUG68_FROM_MESH] * [1, 1, sign])
        np.testing.assert_allclose(mesh, truth, atol=1e-6)


def test_scattered_points_are_no_face() -> None:
    rng = np.random.default_rng(1)
    assert mesh_from_68(rng.uniform(0, 300, (68, 2))) is None
    assert mesh_from_68(np.zeros((68, 2))) is None
    assert mesh_from_68(np.full((68, 2), np.nan)) is None
