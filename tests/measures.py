"""Measures several tests share: the face's shape with its pose removed."""

from __future__ import annotations

import numpy as np

import facecli
from facecli.face_rig import RIGHT_LOWER_LID, RIGHT_UPPER_LID
from facecli.facemodel import RIGID_INDICES, mean_face
from facecli.geometry import umeyama


def identity_points() -> np.ndarray:
    """Mesh points away from the mouth, jaw, lids and brows: they must keep the portrait's shape."""
    v = mean_face().vertices_mm
    mouth_line = v[[61, 291], 1].mean()
    moving = {*range(468, 478)}
    for centre in (*RIGHT_UPPER_LID, *RIGHT_LOWER_LID, 159, 386, 145, 374, 263, 362, 105, 334, 66, 296, 70, 300):
        moving |= set(np.flatnonzero(np.linalg.norm(v - v[centre], axis=1) < 10.0).tolist())
    mirror = facecli.facemodel.MIRROR_INDEX
    moving |= {int(mirror[i]) for i in moving}
    return np.array([i for i in range(468) if i not in moving and v[i, 1] < mouth_line - 12.0])


def shape_error(marks: facecli.Landmarks, reference: np.ndarray) -> np.ndarray:
    """(N,) mean 2D distance of the identity points to the reference, px, after a 3D similarity
    fit on the rigid points removes the head pose."""
    keep = identity_points()
    errors = []
    for points in marks.landmarks_478.astype(np.float64):
        s, rot, t = umeyama(points[RIGID_INDICES], reference[RIGID_INDICES])
        aligned = s * points @ rot.T + t
        errors.append(np.linalg.norm(aligned[keep, :2] - reference[keep, :2], axis=1).mean())
    return np.array(errors)
