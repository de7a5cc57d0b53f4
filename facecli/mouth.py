"""The inside of a talking mouth: what the warp cannot take from the portrait.

A mesh warp only stretches pixels. When the lips part further than in the portrait, the gap
between them is painted: a dark cavity shaded from the lips inwards, a hint of the tongue at
the bottom and of the upper teeth under the upper lip. Where the portrait already shows its
teeth, those are kept instead: the upper ones move with the upper lip (the skull), the lower
ones with the lower lip (the jaw). Before warping, the portrait's own mouth opening is filled
with a dark lip-seam colour, so a closed mouth does not show squeezed teeth.
"""

from __future__ import annotations

import cv2
import numpy as np

from .face_rig import LOWER_INNER_LIP, UPPER_INNER_LIP
from .geometry import curve_y_at

SHIFT = 4  # fixed-point bits for sub-pixel polygon drawing
CAVITY_RGB = np.array([84.0, 28.0, 32.0])
TONGUE_RGB = np.array([150.0, 70.0, 76.0])
TEETH_RGB = np.array([236.0, 230.0, 214.0])
MIN_TEETH_GAP_PX = 1.5  # the portrait "shows its teeth" when its lips are this far apart


def _polygon(points_px: np.ndarray) -> np.ndarray:
    """Inner-lip outline: upper lip left to right, then lower lip right to left."""
    outline = np.concatenate([points_px[UPPER_INNER_LIP, :2], points_px[LOWER_INNER_LIP[-2:0:-1], :2]])
    return np.round(outline * (1 << SHIFT)).astype(np.int32)


def _mask(shape: tuple[int, int], points_px: np.ndarray, offset: np.ndarray, feather_px: float) -> np.ndarray:
    """float32 0-1 mask of the inner-lip polygon inside a box at ``offset`` (x, y)."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [_polygon(points_px[:, :2] - offset)], 255, cv2.LINE_AA, SHIFT)
    out = mask.astype(np.float32) / 255.0
    return cv2.GaussianBlur(out, (0, 0), feather_px) if feather_px > 0 else out


def _gap_px(points_px: np.ndarray) -> np.ndarray:
    """Vertical distance between the facing inner-lip points, corners excluded."""
    return points_px[LOWER_INNER_LIP[1:-1], 1] - points_px[UPPER_INNER_LIP[1:-1], 1]


class MouthPainter:
    """Paints the mouth interior of one portrait into warped frames."""

    def __init__(self, portrait_rgb: np.ndarray, landmarks_478_px: np.ndarray):
        self.portrait = portrait_rgb
        self.rest_px = np.asarray(landmarks_478_px, np.float64)[:, :2]
        self.has_teeth = float(_gap_px(self.rest_px).max()) >= MIN_TEETH_GAP_PX
        lips = np.concatenate([self.rest_px[UPPER_INNER_LIP], self.rest_px[LOWER_INNER_LIP]])
        samples = portrait_rgb[np.clip(lips[:, 1].astype(int) - 1, 0, portrait_rgb.shape[0] - 1),
                               np.clip(lips[:, 0].astype(int), 0, portrait_rgb.shape[1] - 1)]
        self.seam_rgb = np.median(samples, axis=0) * 0.7
        # Synthetic colours follow the portrait's exposure, judged on the cheeks.
        cheeks = self.rest_px[[50, 280, 101, 330]]
        skin = portrait_rgb[np.clip(cheeks[:, 1].astype(int), 0, portrait_rgb.shape[0] - 1),
                            np.clip(cheeks[:, 0].astype(int), 0, portrait_rgb.shape[1] - 1)]
        self.light = float(np.clip(np.median(skin.mean(axis=1)) / 180.0, 0.35, 1.2))

    def _box(self, points_px: np.ndarray, pad: int = 3) -> tuple[int, int, int, int]:
        outline = points_px[np.concatenate([UPPER_INNER_LIP, LOWER_INNER_LIP]), :2]
        h, w = self.portrait.shape[:2]
        x0, y0 = np.maximum(np.floor(outline.min(axis=0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(outline.max(axis=0)).astype(int) + pad, [w, h])
        return int(x0), int(y0), int(x1), int(y1)

    def source_for_warp(self) -> np.ndarray:
        """The portrait with its mouth opening filled by the lip-seam colour (warp this)."""
        out = self.portrait.copy()
        if not self.has_teeth:
            return out
        x0, y0, x1, y1 = self._box(self.rest_px)
        if x1 <= x0 or y1 <= y0:  # the mouth lies outside the picture
            return out
        alpha = _mask((y1 - y0, x1 - x0), self.rest_px, np.array([x0, y0]), 0.7)[..., None]
        patch = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = (patch * (1 - alpha) + self.seam_rgb * alpha).astype(np.uint8)
        return out

    def paint(self, frame_rgb: np.ndarray, moved_px: np.ndarray) -> None:
        """Paint the interior (in place) where the moved lips are apart."""
        moved = np.asarray(moved_px, np.float64)[:, :2]
        gap = _gap_px(moved)
        if gap.max() < 0.75:
            return
        x0, y0, x1, y1 = self._box(moved)
        if x1 <= x0 or y1 <= y0:
            return
        offset = np.array([x0, y0])
        alpha = _mask((y1 - y0, x1 - x0), moved, offset, 0.6)
        interior = self._cavity(moved, offset, (y1 - y0, x1 - x0), gap.max())
        if self.has_teeth:
            self._portrait_teeth(interior, moved, offset)
        patch = frame_rgb[y0:y1, x0:x1].astype(np.float32)
        a = alpha[..., None]
        frame_rgb[y0:y1, x0:x1] = np.clip(patch * (1 - a) + interior * a, 0, 255).astype(np.uint8)

    def _cavity(self, moved: np.ndarray, offset: np.ndarray, shape: tuple[int, int], gap_max: float) -> np.ndarray:
        """Shaded cavity with tongue and (for portraits without visible teeth) upper teeth."""
        h, w = shape
        xs = np.arange(w, dtype=np.float32) + offset[0]
        ys = np.arange(h, dtype=np.float32)[:, None] + offset[1]
        upper, lower = (curve_y_at(xs, moved[lip, :2]) for lip in (UPPER_INNER_LIP, LOWER_INNER_LIP))
        depth = np.clip((ys - upper) / np.maximum(lower - upper, 0.5), 0.0, 1.0)  # 0 upper lip, 1 lower
        left, right = moved[UPPER_INNER_LIP[0], 0], moved[UPPER_INNER_LIP[-1], 0]
        across = np.clip(np.abs(xs - 0.5 * (left + right)) / max(0.5 * (right - left), 1.0), 0.0, 1.0)
        # darker at the back of the mouth and towards the corners
        shade = (0.45 + 0.55 * np.abs(2 * depth - 1)) * (1.0 - 0.5 * across)
        out = CAVITY_RGB * shade[..., None]
        tongue = np.clip((depth - (0.62 + 0.3 * across**2)) * 6.0, 0.0, 1.0) * np.clip(gap_max / 4.0, 0.0, 1.0)
        out = out * (1 - tongue[..., None]) + (TONGUE_RGB * (0.6 + 0.4 * depth[..., None])) * tongue[..., None]
        if not self.has_teeth:
            out = self._teeth_hint(out, xs, ys, upper, lower, across, right - left)
        return out * self.light

    @staticmethod
    def _teeth_hint(out: np.ndarray, xs: np.ndarray, ys: np.ndarray, upper: np.ndarray, lower: np.ndarray,
                    across: np.ndarray, mouth_width: float) -> np.ndarray:
        """Upper incisors under the upper lip: a light band, shadowed at the lip, split into teeth."""
        band_px = np.minimum(0.3 * (lower - upper), 0.09 * mouth_width)
        below_lip = (ys - upper) / np.maximum(band_px, 0.5)  # 0 at the lip .. 1 at the teeth's edge
        teeth = np.clip((1.0 - below_lip) * 2.5, 0.0, 1.0) * (1.0 - 0.7 * across**2)
        tooth_px = max(mouth_width / 9.0, 2.0)
        centre = 0.5 * (xs[0] + xs[-1])
        gaps = 1.0 - 0.25 * (0.5 + 0.5 * np.cos(2 * np.pi * (xs - centre) / tooth_px + np.pi)) ** 8
        shade = (0.7 + 0.3 * np.clip(below_lip * 3.0, 0.0, 1.0)) * (gaps * (1.0 - 0.35 * across))[None]
        tint = TEETH_RGB * shade[..., None]
        return out * (1 - teeth[..., None]) + tint * teeth[..., None]

    def _portrait_teeth(self, interior: np.ndarray, moved: np.ndarray, offset: np.ndarray) -> None:
        """Overlay the portrait's own teeth: upper half with the upper lip, lower half with the jaw."""
        h, w = interior.shape[:2]
        rest = self.rest_px
        mid_y = 0.5 * (rest[13, 1] + rest[14, 1])
        for anchor, upper_half in ((13, True), (14, False)):
            dx, dy = moved[anchor] - rest[anchor]
            m = np.float32([[1, 0, dx - offset[0]], [0, 1, dy - offset[1]]])
            layer = cv2.warpAffine(self.portrait, m, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32)
            mask = _mask((h, w), rest + [dx, dy], offset, 0.5)
            ys = np.arange(h, dtype=np.float32)[:, None] + offset[1] - dy
            half = np.clip((mid_y - ys) + 0.5, 0, 1) if upper_half else np.clip((ys - mid_y) + 0.5, 0, 1)
            a = (mask * half)[..., None]
            interior[:] = interior * (1 - a) + layer * a
