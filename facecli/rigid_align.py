"""Rigid registration of meshes sharing one topology, trusting the skull over the expression.

Every mesh is aligned to a reference mesh of the same topology (vertex i is the same point of
the face in every mesh) by an iteratively reweighted Kabsch fit without scale: each vertex has
a prior weight (how far it is trusted to be rigid) and, each iteration, a Geman-McClure weight
of its residual, so the points an expression moved (jaw, lips, cheeks, brows) stop pulling on
the fit. Meshes are aligned one by one to the reference: the set may be unordered; only the
optional temporal smoothing reads the list as a sequence.

Prior weights, first that applies:

- the user's, one per vertex (:func:`read_weights`);
- MediaPipe topology (468 or 478 vertices): 1 on ``facemodel.RIGID_INDICES`` (forehead,
  temples, nose bridge, eye corners), ``PRIOR_ELSEWHERE`` on the other vertices;
- any other topology (FLAME's 5023 vertices, scans in correspondence): estimated from the set,
  :func:`spread_weights`. FLAME's own region masks ship as a pickle, which facecli never loads,
  so FLAME meshes use this estimate too.

Units are the meshes' own; names say mm as facecli's meshes are in mm. Nothing depends on the
unit: the robust scale comes from the residuals and tolerances from the reference's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from .errors import InputError, UsageError
from .facemodel import RIGID_INDICES
from .geometry import umeyama
from .meshio import MAX_FILE_BYTES

MEDIAPIPE_VERTEX_COUNTS = (468, 478)
PRIOR_ELSEWHERE = 0.1  # not 0: the rest of the face steadies the fit where the expression left it alone
GEMAN_MCCLURE_SCALE = 2.0  # robust scale c in weighted-median residuals: about 3 sigmas of 3D Gaussian noise
MAX_ITERATIONS = 100
TOLERANCE = 1e-7  # convergence: largest vertex move between iterations, in reference radii (~5 nm on a face)
SPREAD_PERCENTILE = 75.0  # of a vertex's distances to its median position: catches parts moving in 1/4 of the set
SPREAD_SCALE_PERCENTILE = 10.0  # the steadiest tenth of the vertices sets what "steady" means
SPREAD_PASSES = 2  # the second pass measures spreads after a fit that already trusts the skull
SMOOTH_SIGMA_FRAMES = 1.5  # halves estimation noise; a local line fit keeps a turning head from lagging
MIN_MESHES_FOR_SPREAD = 3  # with two meshes there is no telling which one moved


@dataclass(frozen=True)
class RigidTransform:
    """``aligned = vertices @ rotation.T + translation`` brings a mesh onto the reference."""

    rotation: np.ndarray  # (3, 3), det +1
    translation: np.ndarray  # (3,) mm
    iterations: int  # reweighting rounds the fit took (1 for plain Kabsch)
    residual_mm: float  # RMS distance to the reference, weighted by prior and robust weights

    def apply(self, vertices: np.ndarray) -> np.ndarray:
        return np.asarray(vertices, np.float64) @ self.rotation.T + self.translation

    @property
    def matrix(self) -> np.ndarray:
        """(4, 4) homogeneous form."""
        out = np.eye(4)
        out[:3, :3], out[:3, 3] = self.rotation, self.translation
        return out


def read_weights(path: str | Path, vertex_count: int) -> np.ndarray:
    """(N,) prior weights from a text file: one number per line, in vertex order; blank lines and
    ``#`` comments are skipped."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError("weights file over 1 GB; give one number per vertex", path)
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read the weights file ({exc.strerror or exc}); check the path", path) from exc
    values = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            try:
                values.append(float(line))
            except ValueError:
                raise InputError(f"line {number} is not a number: {line[:40]!r}; give one weight per line",
                                 path) from None
    return _checked_weights(np.array(values), vertex_count, path)


def _checked_weights(weights: np.ndarray, vertex_count: int, path: str | Path | None = None) -> np.ndarray:
    weights = np.asarray(weights, np.float64)
    if weights.shape != (vertex_count,):
        raise InputError(f"{weights.size} weights for {vertex_count} vertices; give one weight per vertex", path)
    if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise InputError("weights must be finite, not negative, and not all 0", path)
    return weights


def stack_meshes(meshes_vertices: Sequence[np.ndarray], names: Sequence[str] | None = None) -> np.ndarray:
    """(M, N, 3) float64 from M (N, 3) arrays; InputError when they do not share one topology."""
    if len(meshes_vertices) == 0:
        raise UsageError("no meshes to align")
    names = list(names) if names is not None else [f"mesh {i}" for i in range(len(meshes_vertices))]
    arrays = [np.asarray(v, np.float64) for v in meshes_vertices]
    for name, array in zip(names, arrays):
        if array.ndim != 2 or array.shape[1] != 3 or len(array) < 3:
            raise InputError(f"expected (N, 3) vertex positions with N >= 3, got {array.shape}", name)
        if array.shape != arrays[0].shape:
            raise InputError(f"mixed topology: {name} has {len(array)} vertices, {names[0]} has {len(arrays[0])}; "
                             "every mesh must share one vertex order")
        if not np.isfinite(array).all():
            raise InputError("vertex positions hold NaN or infinity", name)
    return np.stack(arrays)


def mediapipe_weights(vertex_count: int) -> np.ndarray:
    """(468,) or (478,) prior: 1 on RIGID_INDICES (all below 468), PRIOR_ELSEWHERE elsewhere."""
    weights = np.full(vertex_count, PRIOR_ELSEWHERE)
    weights[RIGID_INDICES] = 1.0
    return weights


def spread_weights(meshes_vertices: Sequence[np.ndarray] | np.ndarray, ref_index: int = 0) -> np.ndarray:
    """(N,) prior estimated from the set: the vertices that vary least are the skull.

    Every mesh is aligned to the reference (:func:`align`, first with uniform weights: the
    robust fit already discounts the expression); a vertex's spread is the SPREAD_PERCENTILE of
    its distances to its median aligned position; weights are exp(-(spread / scale)^2), with
    scale the SPREAD_SCALE_PERCENTILE of the spreads. The next pass aligns with these weights
    and measures again. Fewer than 3 meshes give uniform weights: with two there is no telling
    which one moved.
    """
    stack = stack_meshes(meshes_vertices)
    weights = np.ones(stack.shape[1])
    if len(stack) < MIN_MESHES_FOR_SPREAD:
        return weights
    reference = stack[ref_index]
    for _ in range(SPREAD_PASSES):
        aligned = np.stack([align(v, reference, weights).apply(v) for v in stack])
        distances = np.linalg.norm(aligned - np.median(aligned, axis=0), axis=2)
        spread = np.percentile(distances, SPREAD_PERCENTILE, axis=0)
        scale = max(np.percentile(spread, SPREAD_SCALE_PERCENTILE), TOLERANCE * _radius(reference))
        weights = np.exp(-((spread / scale) ** 2))
    return weights


def vertex_weights(meshes_vertices: Sequence[np.ndarray] | np.ndarray, user_weights: np.ndarray | None = None,
                   ref_index: int = 0) -> np.ndarray:
    """(N,) prior weights: the user's, else MediaPipe's for 468/478 vertices, else estimated from the set."""
    stack = stack_meshes(meshes_vertices)
    count = stack.shape[1]
    if user_weights is not None:
        return _checked_weights(user_weights, count)
    if count in MEDIAPIPE_VERTEX_COUNTS:
        return mediapipe_weights(count)
    return spread_weights(stack, ref_index)


def _radius(points: np.ndarray) -> float:
    """RMS distance to the centroid: the size tolerances are relative to."""
    return float(np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean())) or 1.0


def _kabsch(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, rot, t = umeyama(src, dst, weights, scale=False)
    return rot, t


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def _robust_weights(src: np.ndarray, dst: np.ndarray, rot: np.ndarray, t: np.ndarray, prior: np.ndarray,
                    floor_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Residual distances (N,) and prior times Geman-McClure weights (N,)."""
    residual = np.linalg.norm(src @ rot.T + t - dst, axis=1)
    scale = max(GEMAN_MCCLURE_SCALE * _weighted_median(residual, prior), floor_mm)
    return residual, prior / (1.0 + (residual / scale) ** 2) ** 2


def _transform(src: np.ndarray, dst: np.ndarray, rot: np.ndarray, t: np.ndarray, prior: np.ndarray,
               floor_mm: float, iterations: int) -> RigidTransform:
    residual, weights = _robust_weights(src, dst, rot, t, prior, floor_mm)
    rms = float(np.sqrt((weights * residual**2).sum() / weights.sum()))
    return RigidTransform(rot, t, iterations, rms)


def align(vertices: np.ndarray, reference: np.ndarray, weights: np.ndarray) -> RigidTransform:
    """Rigid transform (no scale) taking ``vertices`` (N, 3) onto ``reference`` (N, 3), by IRLS Kabsch.

    Starts from the prior-weighted Kabsch fit; each round weighs every vertex by its prior
    ``weights`` (N,) times the Geman-McClure weight 1 / (1 + (r / c)^2)^2 of its residual r,
    c = GEMAN_MCCLURE_SCALE x the prior-weighted median residual, until no vertex moves by more
    than TOLERANCE reference radii.
    """
    src, dst = np.asarray(vertices, np.float64), np.asarray(reference, np.float64)
    prior = np.asarray(weights, np.float64)
    floor_mm = TOLERANCE * _radius(dst)  # keeps c > 0 on noise-free data
    rot, t = _kabsch(src, dst, prior)
    for iteration in range(1, MAX_ITERATIONS + 1):
        _, robust = _robust_weights(src, dst, rot, t, prior, floor_mm)
        new_rot, new_t = _kabsch(src, dst, robust)
        moved = np.abs(src @ (new_rot - rot).T + (new_t - t)).max()
        rot, t = new_rot, new_t
        if moved < floor_mm:
            break
    return _transform(src, dst, rot, t, prior, floor_mm, iteration)


def kabsch_all(vertices: np.ndarray, reference: np.ndarray) -> RigidTransform:
    """Baseline: one least-squares rigid fit on every vertex alike."""
    src, dst = np.asarray(vertices, np.float64), np.asarray(reference, np.float64)
    uniform = np.ones(len(src))
    rot, t = _kabsch(src, dst, uniform)
    return _transform(src, dst, rot, t, uniform, TOLERANCE * _radius(dst), 1)


def stabilize_meshes(meshes_vertices: Sequence[np.ndarray], ref_index: int = 0,
                     user_weights: np.ndarray | None = None, smooth: bool = False,
                     names: Sequence[str] | None = None) -> list[RigidTransform]:
    """One transform per mesh taking its skull onto the reference mesh's (``ref_index``).

    ``user_weights`` (N,) replace the derived prior (:func:`vertex_weights`). ``smooth`` reads the
    list as a time sequence and fits each transform with its neighbours (a Gaussian-weighted
    local line, SMOOTH_SIGMA_FRAMES): about half the estimation noise, little lag on a turning
    head; leave it off for unordered sets. ``names`` (file names) go into errors.
    """
    stack = stack_meshes(meshes_vertices, names)
    if not -len(stack) <= ref_index < len(stack):
        raise UsageError(f"reference index {ref_index} is out of range for {len(stack)} meshes")
    prior = vertex_weights(stack, user_weights, ref_index)
    reference = stack[ref_index]
    transforms = [align(v, reference, prior) for v in stack]
    return _smoothed(transforms, stack, reference, prior) if smooth else transforms


def _smoothed(transforms: list[RigidTransform], stack: np.ndarray, reference: np.ndarray,
              prior: np.ndarray) -> list[RigidTransform]:
    """Transforms smoothed by a Gaussian-weighted local line fit through their neighbours (a
    plain average would lag a turning head at the ends of the sequence).

    Each transform is split into its rotation and the point p of its mesh that lands on the
    reference's weighted centroid c (where the skull is in that mesh), so that rotating does
    not drag the translation along; rotations are fitted as rotation vectors relative to the
    frame's own, and the smoothed t = c - R p.
    """
    centre = prior @ reference / prior.sum()
    rotations = Rotation.from_matrix(np.stack([tr.rotation for tr in transforms]))
    anchors = np.stack([tr.rotation.T @ (centre - tr.translation) for tr in transforms])
    floor_mm = TOLERANCE * _radius(reference)
    out = []
    reach = int(np.ceil(4 * SMOOTH_SIGMA_FRAMES))  # frames further off weigh under 1e-3
    for i, (vertices, tr) in enumerate(zip(stack, transforms)):
        window = slice(max(i - reach, 0), i + reach + 1)
        weights = _local_line_weights(np.arange(len(transforms))[window] - i)
        turn = weights @ (rotations[i].inv() * rotations[window]).as_rotvec()
        rot = (rotations[i] * Rotation.from_rotvec(turn)).as_matrix()
        out.append(_transform(vertices, reference, rot, centre - rot @ (weights @ anchors[window]), prior, floor_mm,
                              tr.iterations))
    return out


def _local_line_weights(offsets: np.ndarray) -> np.ndarray:
    """Weights that read a Gaussian-weighted least-squares line through frames at ``offsets`` at offset 0."""
    kernel = np.exp(-0.5 * (offsets / SMOOTH_SIGMA_FRAMES) ** 2)
    s0, s1, s2 = kernel.sum(), kernel @ offsets, kernel @ offsets**2
    if len(offsets) < 2:
        return kernel / s0
    return kernel * (s2 - s1 * offsets) / (s0 * s2 - s1**2)
