"""Dense, smooth image warps driven by a moving point set (a face mesh plus anchors).

The portrait's points are triangulated once (Delaunay, with fixed anchors around the head and
along the image border, so the background stays put). Each frame, the points' displacements
are spread over every pixel by barycentric interpolation in those triangles (a precomputed
sparse matrix on a half-resolution grid, upsampled bilinearly, which rounds the triangles'
creases), inverted by fixed-point iteration (the
output pixel q samples the source at p with p + d(p) = q), and applied with one
``cv2.remap``. Only the box that the moving points can reach is computed.

Used by ``animate`` and ``reenact``.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import sparse
from scipy.spatial import Delaunay

GRID_STEP_PX = 2  # the displacement field is computed on every 2nd pixel, then upsampled
INVERSE_ITERATIONS = 2


def ring(centre: np.ndarray, radii: np.ndarray, count: int) -> np.ndarray:
    """(count, 2) points on an ellipse with the given (rx, ry) radii around centre."""
    angle = np.linspace(0.0, 2.0 * np.pi, count, endpoint=False)
    return centre + np.stack([radii[0] * np.cos(angle), radii[1] * np.sin(angle)], axis=1)


def border_points(width: int, height: int, per_side: int = 6) -> np.ndarray:
    """Points along the image border (corners included), a little outside it."""
    xs = np.linspace(-1.0, width, per_side + 1)
    ys = np.linspace(-1.0, height, per_side + 1)
    top = np.stack([xs, np.full_like(xs, -1.0)], axis=1)
    bottom = np.stack([xs, np.full_like(xs, height)], axis=1)
    left = np.stack([np.full_like(ys, -1.0), ys], axis=1)[1:-1]
    right = np.stack([np.full_like(ys, width), ys], axis=1)[1:-1]
    return np.concatenate([top, bottom, left, right])


class MeshWarp:
    """Warps images of one size by the motion of ``moving_px`` (M, 2+).

    ``fixed_px`` (a ring around the moving points) and the image border never move, so pixels
    move only inside the ring's box (``box``: x0, y0, x1, y1, clipped to the image).
    """

    def __init__(self, moving_px: np.ndarray, fixed_px: np.ndarray, width: int, height: int):
        self.source = np.asarray(moving_px, np.float64)[:, :2]
        fixed = np.asarray(fixed_px, np.float64)
        points = np.concatenate([self.source, fixed, border_points(width, height)])
        x0, y0 = np.floor(np.maximum(fixed.min(axis=0), 0)).astype(int)
        x1, y1 = np.ceil(np.minimum(fixed.max(axis=0), [width - 1, height - 1])).astype(int)
        self.box = (x0, y0, x1 + 1, y1 + 1)
        self._weights = self._barycentric(Delaunay(points), x0, y0, x1 + 1, y1 + 1)
        rows, cols = self._grid_shape
        offset = (GRID_STEP_PX - 1) / 2
        self._origin = np.array([x0 + offset, y0 + offset], np.float32)  # node (0, 0), px
        self._grid_px = np.dstack(np.meshgrid(self._origin[0] + GRID_STEP_PX * np.arange(cols, dtype=np.float32),
                                              self._origin[1] + GRID_STEP_PX * np.arange(rows, dtype=np.float32)))

    def _barycentric(self, tri: Delaunay, x0: int, y0: int, x1: int, y1: int) -> sparse.csr_matrix:
        """Sparse (grid pixels, moving points) matrix: a displacement field from point displacements."""
        # nodes at x0 + (step-1)/2 + step*k: where cv2.resize by ``step`` puts the centre of pixel k
        offset = (GRID_STEP_PX - 1) / 2
        gx, gy = np.meshgrid(x0 + offset + np.arange(0, x1 - x0 + GRID_STEP_PX, GRID_STEP_PX, dtype=np.float64),
                             y0 + offset + np.arange(0, y1 - y0 + GRID_STEP_PX, GRID_STEP_PX, dtype=np.float64))
        self._grid_shape = gx.shape
        grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
        simplex = tri.find_simplex(grid)
        inside = simplex >= 0
        transform = tri.transform[simplex[inside]]
        partial = np.einsum("nij,nj->ni", transform[:, :2], grid[inside] - transform[:, 2])
        bary = np.concatenate([partial, 1.0 - partial.sum(axis=1, keepdims=True)], axis=1)
        vertices = tri.simplices[simplex[inside]]
        rows = np.repeat(np.flatnonzero(inside), 3)
        keep = vertices.ravel() < len(self.source)  # fixed points contribute zero displacement
        return sparse.csr_matrix((bary.ravel()[keep], (rows[keep], vertices.ravel()[keep])),
                                 shape=(len(grid), len(self.source)))

    def map(self, moved_px: np.ndarray) -> np.ndarray:
        """(h, w, 2) float32 source position (x, y) of each pixel of the warp box.

        The inverse is found on the coarse grid (q = p + d(p), solved by evaluating d at the
        current estimate of p), then upsampled (the nodes sit where ``cv2.resize`` expects them,
        so the upsampled map is exact where the motion is smooth).
        """
        delta = np.asarray(moved_px, np.float64)[:, :2] - self.source
        field = (self._weights @ delta).astype(np.float32).reshape(*self._grid_shape, 2)
        source = self._grid_px - field
        for _ in range(INVERSE_ITERATIONS):
            at = (source - self._origin) / GRID_STEP_PX  # where p falls on the grid
            source = self._grid_px - cv2.remap(field, at[..., 0], at[..., 1], cv2.INTER_LINEAR,
                                               borderMode=cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = self.box
        full = cv2.resize(source, None, fx=GRID_STEP_PX, fy=GRID_STEP_PX, interpolation=cv2.INTER_LINEAR)
        return full[: y1 - y0, : x1 - x0]

    def warp(self, image: np.ndarray, moved_px: np.ndarray) -> np.ndarray:
        """The image with its points moved to ``moved_px`` (M, 2+) px; pixels outside the box are kept."""
        out = image.copy()
        x0, y0, x1, y1 = self.box
        out[y0:y1, x0:x1] = cv2.remap(image, self.map(moved_px), None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return out
