"""A fake backend for tests: drives the batch spine without models.

It "finds" a face wherever the image has a bright square on a dark background, which a
test can draw, and places a fixed landmark template inside it.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..facemodel import mean_face
from ..geometry import box_centres
from . import Detector, FrameDetections, LandmarkModel, LandmarkSession


class FakeDetector(Detector):
    def __init__(self, min_score: float = 0.5, min_size: float = 8.0, max_faces: int = 0):
        self.min_size = min_size

    def detect(self, image_rgb: np.ndarray) -> FrameDetections:
        mask = (image_rgb.mean(axis=2) > 127).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes = [s[:4] for s in stats[1:count] if min(s[2], s[3]) >= self.min_size]
        if not boxes:
            return FrameDetections.empty()
        boxes = np.float32(boxes)
        keypoints = np.repeat(box_centres(boxes)[:, None, :], 6, axis=1)
        return FrameDetections(boxes, np.ones(len(boxes), np.float32), keypoints)


class _FakeSession(LandmarkSession):
    def fit(self, image_rgb: np.ndarray, roi_xywh: np.ndarray) -> np.ndarray | None:
        x, y, side = roi_xywh[0], roi_xywh[1], roi_xywh[2]
        template = mean_face().vertices_mm
        span = np.ptp(template[:, :2], axis=0).max()
        points = template / span * side * 0.5
        points[:, :2] += (x + side / 2, y + side / 2)
        return points


class FakeLandmarkModel(LandmarkModel):
    def open_session(self, video: bool) -> LandmarkSession:
        return _FakeSession()
