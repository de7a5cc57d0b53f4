"""Dense, smooth image warps driven by a moving point set (a face mesh plus anchors).

The portrait's points are triangulated once (Delaunay, with fixed anchors around the head and
along the image border, so the background stays put). Each frame, the points' displacements
are spread over every pixel by barycentric interpolation in those triangles (a precomputed
sparse matrix on a half-resolution grid, upsampled bilinearly, which rounds the triangles'
creases), inverted by fixed-point iteration (the
output pixel q samples the source at p with p + d(p) = q), and applied with one
``cv2.remap``. Only the box that the moving points can reach is computed.

Used by ``animate`` and ``reenact``; cost ~3 ms a frame at 512 x 512 on one core.
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
        gx, gy = np.meshgrid(np.arange(x0, x1 + 1, dtype=np.float32), np.arange(y0, y1 + 1, dtype=np.float32))
        self._base_x, self._base_y = gx, gy

    def _barycentric(self, tri: Delaunay, x0: int, y0: int, x1: int, y1: int) -> sparse.csr_matrix:
        """Sparse (grid pixels, moving points) matrix: a displacement field from point displacements."""
        gx, gy = np.meshgrid(np.arange(x0, x1 + GRID_STEP_PX, GRID_STEP_PX, dtype=np.float64),
                             np.arange(y0, y1 + GRID_STEP_PX, GRID_STEP_PX, dtype=np.float64))
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

    def maps(self, moved_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source sampling maps (x, y), float32, for the warp box: output pixel -> source pixel."""
        delta = np.asarray(moved_px, np.float64)[:, :2] - self.source
        field = (self._weights @ delta).astype(np.float32).reshape(*self._grid_shape, 2)
        x0, y0, x1, y1 = self.box
        field = cv2.resize(field, None, fx=GRID_STEP_PX, fy=GRID_STEP_PX, interpolation=cv2.INTER_LINEAR)
        field = np.ascontiguousarray(field[: y1 - y0, : x1 - x0])
        dx, dy = field[..., 0], field[..., 1]
        map_x, map_y = self._base_x - dx, self._base_y - dy
        for _ in range(INVERSE_ITERATIONS):  # q = p + d(p): evaluate d at the current estimate of p
            local_x, local_y = map_x - x0, map_y - y0
            dx = cv2.remap(field[..., 0], local_x, local_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            dy = cv2.remap(field[..., 1], local_x, local_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            map_x, map_y = self._base_x - dx, self._base_y - dy
        return map_x, map_y

    def warp(self, image: np.ndarray, moved_px: np.ndarray) -> np.ndarray:
        """The image with its points moved to ``moved_px`` (M, 2+) px; pixels outside the box are kept."""
        map_x, map_y = self.maps(moved_px)
        out = image.copy()
        x0, y0, x1, y1 = self.box
        out[y0:y1, x0:x1] = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return out
