"""Retargeting on real landmarks: relative and absolute motion, parts and scales."""

from __future__ import annotations

import numpy as np
import pytest

import facecli
from facecli.face_rig import FaceRig, lip_gaps_mm
from facecli.retarget import DriverFrame, Retargeter, eye_openness_mm, mouth_width_mm
from tests.conftest import ASTRONAUT, GRACE_HOPPER


@pytest.fixture(scope="module")
def faces() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name, path in (("astronaut", ASTRONAUT), ("hopper", GRACE_HOPPER)):
        marks = facecli.landmarks(path)
        out[name] = marks.landmarks_478[0].astype(np.float64), marks.rotation_rad[0].astype(np.float64)
    return out


def test_the_reference_frame_changes_nothing_but_the_lips(faces):
    """Driven by its own reference, the source keeps its face; its parted lips are set to the
    driver's (here closed-ish) opening in its own mouth width."""
    source = FaceRig(faces["astronaut"][0])
    driver = DriverFrame.from_landmarks(*faces["hopper"])
    moved = Retargeter(source, driver, eye_openness_mm(driver.face_mm)).transfer(driver)
    assert np.abs(moved.head_pose_deg).max() < 1e-9
    away_from_mouth = np.linalg.norm(moved.face_mm - source.shape_mm, axis=1)[[10, 151, 9, 1, 4, 234, 454]]
    assert away_from_mouth.max() < 1e-3  # mm
    expected = lip_gaps_mm(driver.face_mm) / mouth_width_mm(driver.face_mm) * mouth_width_mm(source.shape_mm)
    assert np.allclose(lip_gaps_mm(moved.face_mm), expected, atol=1e-6)


def test_relative_motion_scales_and_parts(faces):
    source = FaceRig(faces["astronaut"][0])
    ref = DriverFrame.from_landmarks(*faces["hopper"])
    turned = DriverFrame(ref.face_mm.copy(), ref.rotation_rad + np.radians([2.0, -3.0, 1.0]))
    turned.face_mm[[105, 334], 1] -= 3.0  # brows up 3 mm
    full = Retargeter(source, ref, eye_openness_mm(ref.face_mm), pose_scale=0.5).transfer(turned)
    assert full.head_pose_deg == pytest.approx([-1.5, 1.0, 0.5])  # yaw, pitch, roll, halved
    k = np.linalg.norm(np.subtract(*source.shape_mm[[468, 473], :2])) / np.linalg.norm(np.subtract(*ref.face_mm[[468, 473], :2]))
    assert full.face_mm[105, 1] - source.shape_mm[105, 1] == pytest.approx(-3.0 * k, rel=0.05)
    mouth_only = Retargeter(source, ref, eye_openness_mm(ref.face_mm), parts=("mouth",)).transfer(turned)
    assert np.abs(mouth_only.head_pose_deg).max() == 0 and mouth_only.face_mm[105, 1] == source.shape_mm[105, 1]
    still = Retargeter(source, ref, eye_openness_mm(ref.face_mm), expression_scale=0.0).transfer(turned)
    assert still.face_mm[105, 1] == source.shape_mm[105, 1] and lip_gaps_mm(still.face_mm).max() == 0


def test_absolute_takes_the_drivers_shape(faces):
    """Absolute: the driver's face (scaled to the source's eye distance) and its pose as they are."""
    source = FaceRig(faces["astronaut"][0])
    driver = DriverFrame.from_landmarks(*faces["hopper"])
    moved = Retargeter(source, driver, eye_openness_mm(driver.face_mm), parts=("expression", "pose"),
                       absolute=True).transfer(driver)
    forehead = [10, 151, 9, 109, 338]
    k = np.linalg.norm(np.subtract(*source.shape_mm[[468, 473], :2])) / np.linalg.norm(np.subtract(*driver.face_mm[[468, 473], :2]))
    assert np.allclose(moved.face_mm[forehead], driver.face_mm[forehead] * k, atol=0.05)
    pitch = np.degrees(driver.rotation_rad[0] - source.pose_rad[0])
    assert moved.head_pose_deg[1] == pytest.approx(pitch)
