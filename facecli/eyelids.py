"""Closed eyelids: what the warp cannot take from a portrait with open eyes.

A blink slides the upper lid (and the fold above it) down in the mesh, which squeezes the
eye's own pixels (iris, white, lashes) into a thin dark band under stretched lid skin. As the
lid closes, the closed lid is painted from the fold to the lower lid in the colour of the
portrait's upper-lid skin, shaded towards the lash line drawn along the lid's edge.
"""

from __future__ import annotations

import cv2
import numpy as np

from .face_rig import LEFT_LOWER_LID, LEFT_UPPER_LID, RIGHT_LOWER_LID, RIGHT_UPPER_LID, UPPER_LID_FOLDS
from .geometry import curve_y_at

SHIFT = 4  # fixed-point bits for sub-pixel drawing
EYES = ((RIGHT_UPPER_LID, RIGHT_LOWER_LID), (LEFT_UPPER_LID, LEFT_LOWER_LID))
PAINT_FROM, PAINT_FULL = 0.55, 0.9  # lid closure (0-1) where painting starts, and where it is complete


def _closed_lid(points_px: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Outline of a closed lid: corner, the fold above the lid, corner, the lower lid back."""
    fold = UPPER_LID_FOLDS[int(upper[0])][0][0]
    return np.concatenate([points_px[[upper[0]], :2], points_px[fold, :2], points_px[[upper[-1]], :2],
                           points_px[lower[-2:0:-1], :2]])


class LidPainter:
    """Paints closing eyelids of one portrait into warped frames."""

    def __init__(self, portrait_rgb: np.ndarray, landmarks_478_px: np.ndarray):
        points = np.asarray(landmarks_478_px, np.float64)
        h, w = portrait_rgb.shape[:2]
        self.skin_rgb = []
        for upper, _ in EYES:
            fold, outer = (row for row, _ in UPPER_LID_FOLDS[int(upper[0])])
            lid = 0.5 * (points[fold, :2] + points[outer, :2])  # the lid skin under the brow, clear of lashes
            xs, ys = np.clip(lid[:, 0].astype(int), 0, w - 1), np.clip(lid[:, 1].astype(int), 0, h - 1)
            self.skin_rgb.append(np.median(portrait_rgb[ys, xs].astype(np.float32), axis=0))

    def paint(self, frame_rgb: np.ndarray, moved_px: np.ndarray, closure: tuple[float, float]) -> None:
        """Cover each eye (right, left) in place by its lid closure 0-1."""
        for (upper, lower), skin, amount in zip(EYES, self.skin_rgb, closure):
            alpha = float(np.clip((amount - PAINT_FROM) / (PAINT_FULL - PAINT_FROM), 0.0, 1.0))
            if alpha > 0:
                self._cover(frame_rgb, moved_px, upper, lower, skin, alpha)

    @staticmethod
    def _cover(frame: np.ndarray, points: np.ndarray, upper: np.ndarray, lower: np.ndarray, skin: np.ndarray,
               alpha: float) -> None:
        outline = _closed_lid(points, upper, lower)
        x0, y0 = np.maximum(np.floor(outline.min(axis=0)).astype(int) - 3, 0)
        x1, y1 = np.minimum(np.ceil(outline.max(axis=0)).astype(int) + 4, frame.shape[1::-1])
        if x1 <= x0 or y1 <= y0:
            return
        offset = np.array([x0, y0])
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [np.round((outline - offset) * (1 << SHIFT)).astype(np.int32)], 255, cv2.LINE_AA, SHIFT)
        cover = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 1.0)[..., None] * alpha
        # the lid darkens a little towards its edge, where the lashes are
        edge_y = curve_y_at(np.arange(x0, x1), points[upper, :2])[None, :]
        top_y = curve_y_at(np.arange(x0, x1), outline[1:-len(lower) + 1])[None, :]
        ys = np.arange(y0, y1, dtype=np.float64)[:, None]
        depth = np.clip((ys - top_y) / np.maximum(edge_y - top_y, 1.0), 0.0, 1.0)
        shade = (1.0 - 0.18 * depth**2)[..., None]
        lashes = np.zeros_like(mask)
        edge = np.round((points[upper, :2] - offset) * (1 << SHIFT)).astype(np.int32)
        cv2.polylines(lashes, [edge], False, 255, 1, cv2.LINE_AA, SHIFT)
        lash = lashes.astype(np.float32)[..., None] / 255.0 * alpha * 0.7
        patch = frame[y0:y1, x0:x1].astype(np.float32)
        patch = patch * (1 - cover) + skin * shade * cover
        patch = patch * (1 - lash) + 0.3 * skin * lash
        frame[y0:y1, x0:x1] = np.clip(patch, 0, 255).astype(np.uint8)
