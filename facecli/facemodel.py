"""The 3D face model shared by facecli's stages.

Landmark indices refer to MediaPipe's refined face mesh: 478 points, 0-467 the
mesh and 468-477 the two irises. "Right" and "left" are the subject's, as in
iBUG 300-W, so the subject's right eye is on the image left.

The metric mean face (``mean_face()``) is built by ``scripts/build_mean_face.py``;
``docs/mean_face.md`` describes how and with which limits.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

MESH_POINTS = 478

# Iris centre first, then the four ring points. 468-472 is the iris that sits
# in the eye of mesh points 33/133, i.e. the subject's right (image left).
RIGHT_IRIS = np.arange(468, 473)
LEFT_IRIS = np.arange(473, 478)

# iBUG 300-W 68-point order. Based on the widely copied MediaPipe->dlib table
# (e.g. LatentSync's LM68_FROM_MP478), checked by drawing it on the test
# faces; the jaw was re-picked (see docs/mean_face.md) and brow ends lowered.
IBUG68_FROM_MESH = np.array(
    [
        # 0-16 jaw, image left to right. 0/16 at eye-corner height, points at
        # near-equal arc length along the face oval, as iBUG spaces them.
        127, 234, 132, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 361, 454, 356,
        70, 63, 105, 66, 107,  # 17-21 right brow, outer to inner, upper edge
        336, 296, 334, 293, 300,  # 22-26 left brow, inner to outer
        168, 197, 5, 4,  # 27-30 nose bridge top to tip (4 protrudes most)
        75, 97, 2, 326, 305,  # 31-35 nostril base, image left to right
        33, 160, 158, 133, 153, 144,  # 36-41 right eye from outer corner, upper lid first
        362, 385, 387, 263, 373, 380,  # 42-47 left eye from inner corner, upper lid first
        61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # 48-59 outer lip
        78, 82, 13, 312, 308, 317, 14, 87,  # 60-67 inner lip, 60/64 the inner corners
    ],
    dtype=np.intp,
)

# ArcFace/InsightFace 5-point order: right eye (image left), left eye, nose
# tip, right mouth corner, left mouth corner. Eyes are the iris centres.
FIVE_POINT = np.array([RIGHT_IRIS[0], LEFT_IRIS[0], 4, 61, 291], dtype=np.intp)

# Points the skin barely moves over under expression, for rigid pose fits:
# upper forehead, temples, nose bridge down to the tip, eye corners. Mouth,
# jaw, cheeks, brows and lids are left out; they follow expression. The set is
# closed under MIRROR_INDEX so its centroid lies on the symmetry plane.
RIGID_INDICES = np.array(
    [
        10, 151, 9, 109, 338, 67, 297, 108, 337,  # forehead
        21, 251, 162, 389, 127, 356,  # temples, down to eye height
        168, 6, 197, 195, 5, 4, 1,  # nose bridge and tip (midline)
        122, 351, 196, 419,  # sides of the nose bridge
        33, 263, 130, 359, 133, 362, 243, 463,  # outer and inner eye corners
    ],
    dtype=np.intp,
)

# Each point's left/right partner (itself on the midline); stored in the npz
# and loaded on first access via __getattr__ so the build script can import
# this module before the npz exists.
MIRROR_INDEX: np.ndarray


@dataclass(frozen=True)
class MeanFace:
    """Symmetric mean face in millimetres, OpenCV camera axes.

    x to the image right, y down, z away from the camera: at R=I, t=(0,0,d)
    the face looks at the camera. Origin is the centroid of RIGID_INDICES.
    Triangles are counter-clockwise as seen from the camera, so
    (b-a)x(c-a) is the outward normal (towards -z on the front of the face).
    """

    vertices_mm: np.ndarray  # (478, 3) float64
    triangles: np.ndarray  # (852, 3) int32, indices into the first 468 points
    ipd_mm: float  # distance between the iris centres


def five_points(landmarks_478: np.ndarray) -> np.ndarray:
    """(..., 478, D) landmarks -> (..., 5, D) in FIVE_POINT order."""
    landmarks = np.asarray(landmarks_478)
    if landmarks.ndim < 2 or landmarks.shape[-2] != MESH_POINTS:
        raise ValueError(f"expected (..., {MESH_POINTS}, D) landmarks, got {landmarks.shape}")
    return landmarks[..., FIVE_POINT, :]


@functools.cache
def _model_arrays() -> dict[str, np.ndarray]:
    ref = resources.files("facecli") / "data" / "mean_face.npz"
    with ref.open("rb") as fh, np.load(fh) as npz:
        arrays = {name: npz[name] for name in npz.files}
    for array in arrays.values():
        array.setflags(write=False)  # shared by every caller
    return arrays


@functools.cache
def mean_face() -> MeanFace:
    arrays = _model_arrays()
    return MeanFace(
        vertices_mm=arrays["vertices_mm"],
        triangles=arrays["triangles"],
        ipd_mm=float(arrays["ipd_mm"]),
    )


def __getattr__(name: str) -> np.ndarray:
    if name == "MIRROR_INDEX":
        return _model_arrays()["mirror_index"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
