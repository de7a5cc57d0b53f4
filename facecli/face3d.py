"""Metric 3D faces from landmarks: the geometry ``reconstruct`` (and ``classify``) stand on.

A landmarks row holds MediaPipe's 478 points (x, y in px, z a relative depth in the x scale)
and the head pose that PnP of the mean face gives (``rotation_rad``, ``translation_mm``). Here
each point is placed in the camera in millimetres: its depth is the face's depth plus its own
relative depth scaled to mm, and x, y follow from the pinhole model, so the mesh projects back
exactly onto the landmarks. Undoing the head pose gives the face in its own head frame (the
mean face's axes: x to the image right, y down, z away from the camera, origin at the rigid
points' centroid), where expression can be measured free of pose.
"""

from __future__ import annotations

import numpy as np

from .facemodel import RIGID_INDICES, mean_face
from .geometry import rotation_from_euler_xyz, umeyama


def rotation_matrices(rotation_rad: np.ndarray) -> np.ndarray:
    """(N, 3) OpenFace angles -> (N, 3, 3) rotation matrices (R = Rx·Ry·Rz)."""
    return rotation_from_euler_xyz(np.asarray(rotation_rad, np.float64).reshape(-1, 3))


def lift_to_camera_mm(landmarks_478_px: np.ndarray, rotation_rad: np.ndarray, translation_mm: np.ndarray,
                      camera: np.ndarray) -> np.ndarray:
    """(N, 478, 3) landmarks (px, relative depth) -> (N, 478, 3) camera coordinates, mm.

    The face's depth Z0 is fitted so that Z0·(1 + z/f) matches the depths the pose gives the
    mean face's rigid points (least squares over those points): that ties MediaPipe's
    relative depth to the metric pose without trusting its origin.
    """
    points = np.asarray(landmarks_478_px, np.float64)
    rot = rotation_matrices(rotation_rad)
    focal, centre = camera[0, 0], camera[:2, 2]
    model = mean_face().vertices_mm[RIGID_INDICES]
    model_depth = np.einsum("nj,kj->nk", rot[:, 2, :], model) + np.asarray(translation_mm, np.float64)[:, 2:3]
    relative = 1.0 + points[:, RIGID_INDICES, 2] / focal
    face_depth = (relative * model_depth).sum(axis=1) / (relative ** 2).sum(axis=1)
    depth = face_depth[:, None] * (1.0 + points[..., 2] / focal)
    xy = (points[..., :2] - centre) * (depth / focal)[..., None]
    return np.concatenate([xy, depth[..., None]], axis=-1)


def to_head_frame(camera_mm: np.ndarray, rotation_rad: np.ndarray, translation_mm: np.ndarray) -> np.ndarray:
    """Camera coordinates (N, P, 3) -> the head frame: R^T (X - t)."""
    rot = rotation_matrices(rotation_rad)
    return np.einsum("nji,npj->npi", rot, camera_mm - np.asarray(translation_mm, np.float64)[:, None, :])


def to_camera(head_mm: np.ndarray, rotation_rad: np.ndarray, translation_mm: np.ndarray) -> np.ndarray:
    """The head frame (N, P, 3) -> camera coordinates: R X + t."""
    rot = rotation_matrices(rotation_rad)
    return np.einsum("nij,npj->npi", rot, head_mm) + np.asarray(translation_mm, np.float64)[:, None, :]


def project_px(camera_mm: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """(..., 3) camera coordinates, mm -> (..., 2) pixel coordinates."""
    points = np.asarray(camera_mm, np.float64)
    return points[..., :2] / points[..., 2:3] * camera[0, 0] + camera[:2, 2]


def metric_faces(landmarks_478_px: np.ndarray, rotation_rad: np.ndarray, translation_mm: np.ndarray,
                 camera: np.ndarray) -> np.ndarray:
    """Landmarks rows -> the metric faces in their head frames (N, 478, 3), mm.

    The head frame is the landmarks' own PnP pose: ``to_camera(faces, rotation, translation)``
    is the lifted mesh. (Refining the pose by a 3D fit of the lifted face onto the mean face
    recovered known poses worse, by about 1 deg: MediaPipe's depth is its least certain part.)
    Measures that must not depend on the pose (:mod:`facecli.blendshapes`) align the faces
    onto the mean face themselves.
    """
    return to_head_frame(lift_to_camera_mm(landmarks_478_px, rotation_rad, translation_mm, camera), rotation_rad,
                         translation_mm)


def aligned_to_mean_face(faces_mm: np.ndarray) -> np.ndarray:
    """(N, 478, 3) faces moved and scaled onto the mean face by a similarity fit on its rigid points."""
    model = mean_face().vertices_mm[RIGID_INDICES]
    out = np.empty_like(np.asarray(faces_mm, np.float64))
    for n, face in enumerate(np.asarray(faces_mm, np.float64)):
        scale, rot, shift = umeyama(face[RIGID_INDICES], model)
        out[n] = scale * face @ rot.T + shift
    return out
