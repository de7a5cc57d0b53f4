"""68-point landmark backends in facecli's 478-point layout.

Landmark files hold MediaPipe's 478-point mesh. A backend that measures only the 68 iBUG 300-W
points (face-alignment's FAN, insightface's 1k3d68) fills it like this:

- the 68 measured points go to their mesh indices (:data:`IBUG68_FROM_MESH`), so the files'
  ``x_0..x_67``/``y_0..y_67`` columns hold exactly what the model measured, as with MediaPipe;
- every other point is the mean face posed onto them (a scaled-orthographic fit), moved by the
  measured points' offsets from that fit, spread over their neighbourhood (Gaussian weights
  over distances on the mean face), and fading to the plain fit far from any of them.

Those other 410 points are a plausible mesh for head pose, crops and previews, not measurements
(the forehead, for one, is the mean face's).
"""

from __future__ import annotations

import functools

import numpy as np

from ..facemodel import IBUG68_FROM_MESH, mean_face
from ..geometry import umeyama

SPREAD_MM = 12.0  # how far a measured point's offset reaches on the mean face
SPREAD_FLOOR = 0.1  # weight of the plain fit: beyond ~2 SPREAD_MM from every measured point, the fit wins
FIT_ROUNDS = 8  # scaled-orthographic fit: alternate 3D similarity and depths until it settles
# A model's output is taken for a face while its RMS distance to the posed mean face stays under
# this share of the fitted inter-pupil distance (expressions stay well below; scattered points of
# a patch with no face, or a lost track, land far above). Set on synthetic shapes, not on real
# model outputs: no real weights were at hand (docs/backends.md).
MAX_SHAPE_ERROR = 0.35


def _pose(observed: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) putting the mean face's iBUG points on ``observed`` (68, 2 or 3), and
    the observed points as the fit sees them (3D: depth sign flipped where that fits better)."""
    model = mean_face().vertices_mm[IBUG68_FROM_MESH]
    if observed.shape[1] == 3:
        # A model's depth axis may point either way; a rotation cannot mirror it, so try both.
        candidates = [observed * [1, 1, sign] for sign in (1, -1)]
        fits = [umeyama(model, c) for c in candidates]
        best = int(np.argmin([_error(model, c, *fit) for c, fit in zip(candidates, fits)]))
        return (*fits[best], candidates[best])
    s, r2, t2 = umeyama(model[:, :2], observed)
    rotation, shift = np.eye(3), np.zeros(3)
    rotation[:2, :2], shift[:2] = r2, t2
    for _ in range(FIT_ROUNDS):
        depth = (s * model @ rotation.T + shift)[:, 2]
        s, rotation, shift = umeyama(model, np.column_stack([observed, depth]))
    return s, rotation, shift, np.column_stack([observed, (s * model @ rotation.T + shift)[:, 2]])


def _error(model: np.ndarray, observed: np.ndarray, s: float, rotation: np.ndarray, shift: np.ndarray) -> float:
    fitted = s * model @ rotation.T + shift
    return float(np.sqrt(((fitted - observed) ** 2).sum(axis=1).mean()))


@functools.cache
def _spread_weights() -> np.ndarray:
    """(478, 68) weights of each measured point's offset at each mesh point, rows summing to < 1."""
    vertices = mean_face().vertices_mm
    d2 = ((vertices[:, None, :] - vertices[IBUG68_FROM_MESH][None, :, :]) ** 2).sum(axis=2)
    weights = np.exp(-d2 / (2 * SPREAD_MM**2))
    return weights / (weights.sum(axis=1, keepdims=True) + SPREAD_FLOOR)


def mesh_from_68(points: np.ndarray) -> np.ndarray | None:
    """(478, 3) px mesh around 68 iBUG points (68, 2) or (68, 3) px; None if they do not form a face."""
    observed = np.asarray(points, np.float64)
    if observed.shape not in ((68, 2), (68, 3)) or not np.isfinite(observed).all():
        return None
    face = mean_face()
    s, rotation, shift, observed = _pose(observed)
    fitted = s * face.vertices_mm @ rotation.T + shift
    offsets = observed - fitted[IBUG68_FROM_MESH]
    ipd_px = s * face.ipd_mm
    if ipd_px <= 1.0 or np.sqrt((offsets[:, :2] ** 2).sum(axis=1).mean()) > MAX_SHAPE_ERROR * ipd_px:
        return None
    mesh = fitted + _spread_weights() @ offsets
    mesh[IBUG68_FROM_MESH] = observed
    return mesh
