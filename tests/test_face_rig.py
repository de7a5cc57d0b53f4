"""The portrait rig: controls move the right points the right way, and nothing else."""

from __future__ import annotations

import numpy as np
import pytest

import facecli
from facecli.face_rig import (LEFT_LOWER_LID, LEFT_UPPER_LID, LOWER_INNER_LIP, RIGHT_LOWER_LID, RIGHT_UPPER_LID,
                              UPPER_INNER_LIP, FaceRig)
from facecli.facemodel import RIGID_INDICES
from facecli.results import FACE_CONTROLS
from tests.conftest import ASTRONAUT


def controls(**values: float) -> np.ndarray:
    out = np.zeros(len(FACE_CONTROLS))
    for name, value in values.items():
        out[FACE_CONTROLS.index(name)] = value
    return out


@pytest.fixture(scope="module")
def portrait_points() -> np.ndarray:
    return facecli.landmarks(ASTRONAUT).landmarks_478[0].astype(np.float64)


@pytest.fixture(scope="module")
def rig(portrait_points) -> FaceRig:
    return FaceRig(portrait_points)


def lip_gap(points: np.ndarray) -> float:
    """Mean vertical distance between facing inner-lip points, px."""
    return float((points[LOWER_INNER_LIP[1:-1], 1] - points[UPPER_INNER_LIP[1:-1], 1]).mean())


def pose(rig: FaceRig, head=(0.0, 0.0, 0.0), gaze=(0.0, 0.0), **values: float) -> np.ndarray:
    return rig.pose(controls(**values), np.array(head), np.array(gaze))


def test_the_fit_reproduces_the_portrait(rig, portrait_points):
    assert np.abs(rig.to_image(rig.shape_mm) - portrait_points).max() < 1e-6
    assert 0.4 < rig.scale < 1.0  # px per mm: the astronaut's face is ~92 px wide


def test_rest_closes_the_smiling_mouth(rig, portrait_points):
    assert lip_gap(portrait_points) > 4.0  # the astronaut smiles with her teeth showing
    rest = pose(rig)
    assert abs(lip_gap(rest)) < 0.3
    moved = np.linalg.norm(rest - portrait_points, axis=1) > 0.01
    assert moved[LOWER_INNER_LIP].any() and not moved[RIGID_INDICES].any()  # lips move, rigid points do not


def test_jaw_opening_is_monotonic_and_moves_the_chin_down(rig):
    gaps = [lip_gap(pose(rig, jaw_open=j)) for j in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert np.all(np.diff(gaps) > 0.5) and gaps[-1] > 6.0
    chin_drop = pose(rig, jaw_open=1.0)[152, 1] - pose(rig)[152, 1]
    assert chin_drop > 5.0


def test_lip_close_shuts_an_open_jaw_and_pucker_narrows(rig):
    assert abs(lip_gap(pose(rig, jaw_open=0.5, lip_close=1.0))) < 0.3
    width = lambda p: p[291, 0] - p[61, 0]  # noqa: E731 - mouth corner to corner
    assert width(pose(rig, lip_pucker=1.0)) < width(pose(rig)) - 2.0 < width(pose(rig, lip_stretch=1.0)) - 4.0
    smile = pose(rig, smile=1.0)
    assert smile[61, 1] < pose(rig)[61, 1] - 1.0 and smile[291, 1] < pose(rig)[291, 1] - 1.0  # corners rise


def test_blinks_close_each_eye_on_its_own(rig):
    def opening(points, upper, lower):
        return float((points[lower[1:-1], 1] - points[upper[1:-1], 1]).mean())

    open_r = opening(pose(rig), RIGHT_UPPER_LID, RIGHT_LOWER_LID)
    closed = pose(rig, blink_right=1.0)
    assert open_r > 2.0 and opening(closed, RIGHT_UPPER_LID, RIGHT_LOWER_LID) < 0.05 * open_r
    assert opening(closed, LEFT_UPPER_LID, LEFT_LOWER_LID) == pytest.approx(opening(pose(rig), LEFT_UPPER_LID,
                                                                                    LEFT_LOWER_LID))
    assert closed[468, 1] > pose(rig)[468, 1]  # the iris goes under the lid


def test_brows_and_gaze(rig):
    assert pose(rig, brow_raise=1.0)[105, 1] < pose(rig)[105, 1] - 1.5
    assert pose(rig, brow_down=1.0)[105, 1] > pose(rig)[105, 1] + 1.0
    looked = pose(rig, gaze=(10.0, 0.0))
    assert looked[468, 0] < pose(rig)[468, 0] - 1.0  # positive yaw: towards the image left
    assert np.allclose(looked[:468], pose(rig)[:468])


def test_head_turns_rotate_about_the_neck(rig):
    rest = pose(rig)
    yawed = pose(rig, head=(5.0, 0.0, 0.0))
    # positive yaw turns the face towards the image left; the nose tip, furthest from the
    # pivot in the neck, moves most
    shift = yawed[:, 0] - rest[:, 0]
    assert shift[1] < -1.0 and shift[1] < shift[234] and shift[1] < shift[454]
    rolled = pose(rig, head=(0.0, 0.0, 5.0))
    eye_line = lambda p: np.degrees(np.arctan2(*(p[473, 1::-1] - p[468, 1::-1])))  # noqa: E731
    assert eye_line(rolled) - eye_line(rest) == pytest.approx(5.0, abs=0.3)
    nodded = pose(rig, head=(0.0, 5.0, 0.0))
    assert nodded[152, 1] > rest[152, 1]  # positive pitch tilts the face down
