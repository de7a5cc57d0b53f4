"""Preview drawings: boxes with ids, landmarks with a head-pose axis."""

from __future__ import annotations

import cv2
import numpy as np

from .facemodel import IBUG68_FROM_MESH
from .geometry import rotation_from_euler_xyz
from .results import Faces, Landmarks

_PALETTE = np.array(
    [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)],
    np.uint8,
)


def _colour(face_id: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in _PALETTE[face_id % len(_PALETTE)])


def _label(image: np.ndarray, text: str, x: float, y: float, colour: tuple[int, int, int]) -> None:
    scale = max(0.4, image.shape[1] / 1600)
    org = (int(x), max(12, int(y) - 4))
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def draw_faces(image_rgb: np.ndarray, faces: Faces) -> np.ndarray:
    out = image_rgb.copy()
    for i in range(len(faces)):
        x, y, w, h = faces.box_xywh[i]
        colour = _colour(int(faces.face_id[i]))
        cv2.rectangle(out, (int(x), int(y)), (int(x + w), int(y + h)), colour, 2, cv2.LINE_AA)
        for kx, ky in faces.keypoints_6[i]:
            cv2.circle(out, (int(kx), int(ky)), 2, colour, -1, cv2.LINE_AA)
        _label(out, f"id {faces.face_id[i]} {faces.score[i]:.2f}", x, y, colour)
    return out


def draw_landmarks(image_rgb: np.ndarray, marks: Landmarks) -> np.ndarray:
    out = image_rgb.copy()
    for i in range(len(marks)):
        colour = _colour(int(marks.face_id[i]))
        points = marks.landmarks_478[i]
        for px, py, _ in points[::2]:
            out[int(np.clip(py, 0, out.shape[0] - 1)), int(np.clip(px, 0, out.shape[1] - 1))] = colour
        for px, py, _ in points[IBUG68_FROM_MESH]:
            cv2.circle(out, (int(px), int(py)), 2, colour, -1, cv2.LINE_AA)
        _draw_axis(out, points, marks.rotation_rad[i])
        yaw, pitch, roll = marks.head_pose_deg[i]
        x, y, _, _ = marks.box_xywh[i]
        _label(out, f"id {marks.face_id[i]} yaw {yaw:+.0f} pitch {pitch:+.0f} roll {roll:+.0f}", x, y, colour)
    return out


def _draw_axis(image: np.ndarray, points: np.ndarray, rotation_rad: np.ndarray) -> None:
    """x (red), y (green) and z (blue) head axes from the nose tip, as an orthographic sketch."""
    origin = points[1, :2]  # mesh point 1 is the nose tip
    length = 0.5 * float(np.ptp(points[:, 0]))
    axes = rotation_from_euler_xyz(rotation_rad.astype(np.float64))
    for axis, colour in zip(axes.T, [(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        tip = origin + length * axis[:2]
        cv2.arrowedLine(image, tuple(int(v) for v in origin), tuple(int(v) for v in tip), colour, 2, cv2.LINE_AA)
