from __future__ import annotations

import numpy as np
import pytest

from facecli import geometry
from facecli.facemodel import RIGID_INDICES, mean_face


def test_euler_round_trip() -> None:
    angles = np.array([0.3, -0.5, 0.2])
    assert np.allclose(geometry.euler_xyz(geometry.rotation_from_euler_xyz(angles)), angles)


def test_umeyama_recovers_a_similarity() -> None:
    rng = np.random.default_rng(0)
    src = rng.random((30, 3))
    rot = geometry.rotation_from_euler_xyz(np.array([0.1, 0.7, -0.3]))
    dst = 2.5 * src @ rot.T + [1, 2, 3]
    s, r, t = geometry.umeyama(src, dst)
    assert s == pytest.approx(2.5) and np.allclose(r, rot) and np.allclose(t, [1, 2, 3])


def test_solve_pose_recovers_a_known_head_pose() -> None:
    model = mean_face().vertices_mm[RIGID_INDICES]
    truth_rot = geometry.rotation_from_euler_xyz(np.radians([10.0, -25.0, 5.0]))
    truth_t = np.array([30.0, -20.0, 700.0])
    camera = geometry.camera_matrix(1280, 720)
    cam = model @ truth_rot.T + truth_t
    image = cam[:, :2] / cam[:, 2:] * camera[0, 0] + camera[:2, 2]
    rot, t = geometry.solve_pose(model, image, camera)
    assert np.degrees(geometry.euler_xyz(rot)) == pytest.approx([10.0, -25.0, 5.0], abs=0.1)
    assert t == pytest.approx(truth_t, abs=0.5)


def test_iou_and_nms() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 10, 10]], float)
    assert geometry.box_iou(boxes[0], boxes[0])[0, 0] == pytest.approx(1.0)
    assert geometry.box_iou(boxes[0], boxes[2])[0, 0] == 0.0
    assert geometry.nms(boxes, np.array([0.5, 0.9, 0.7]), 0.3).tolist() == [1, 2]
    face_and_part = np.array([[0, 0, 100, 100], [40, -20, 60, 60]], float)  # IoU 0.23, 2/3 inside
    assert geometry.nms(face_and_part, np.array([0.9, 0.8]), 0.3).tolist() == [0, 1]
    assert geometry.nms(face_and_part, np.array([0.9, 0.8]), 0.3, contained=0.6).tolist() == [0]


def test_points_in_boxes_and_box_centres() -> None:
    boxes = np.float32([[0, 0, 10, 10], [5, 5, 10, 20]])
    assert geometry.box_centres(boxes).tolist() == [[5, 5], [10, 15]]
    inside = geometry.points_in_boxes([[5, 5], [10, 10], [12, 24], [11, 0]], boxes)
    assert inside.tolist() == [[True, True], [True, True], [False, True], [False, False]]  # edges count
    assert geometry.points_in_boxes([1, 1], np.zeros((0, 4))).shape == (1, 0)
