"""Drawing ``reconstruct``'s meshes: the preview (shaded mesh over the frame, beside a fixed
frontal view) and each track's texture in the mean face's frontal UV layout."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np

from . import media
from .face3d import to_camera
from .face_rig import LEFT_LOWER_LID, LEFT_UPPER_LID, LOWER_INNER_LIP, RIGHT_LOWER_LID, RIGHT_UPPER_LID, \
    UPPER_INNER_LIP
from .facemodel import LEFT_IRIS, RIGHT_IRIS, mean_face
from .mesh_export import material_path, write_obj
from .raster import frontal_uv, shade, unwrap_texture
from .results import Landmarks, Reconstruction

OVERLAY_ALPHA = 0.6
FRONTAL_FOCAL = 2.0  # the frontal view's focal length, in panel heights (a long lens: little perspective)
FRONTAL_FILL = 0.75  # share of the panel's height the face's 200 mm take
FACE_HEIGHT_MM = 200.0
TEXTURE_SIZE = 512  # px


@functools.cache
def closed_triangles() -> np.ndarray:
    """The mean face's triangles with the eye and mouth holes filled (fans around each iris
    centre, a strip between the inner lips), so renderings and textures show eyes and lips."""
    upper_lids, lower_lids = (RIGHT_UPPER_LID, LEFT_UPPER_LID), (RIGHT_LOWER_LID, LEFT_LOWER_LID)
    added = []
    for upper, lower, centre in zip(upper_lids, lower_lids, (RIGHT_IRIS[0], LEFT_IRIS[0])):
        ring = np.concatenate([upper, lower[::-1][1:-1]])
        added += [(centre, a, b) for a, b in zip(ring, np.roll(ring, -1))]
    for i in range(len(UPPER_INNER_LIP) - 1):
        up, low = UPPER_INNER_LIP[i:i + 2], LOWER_INNER_LIP[i:i + 2]
        added += [(up[0], up[1], low[1]), (up[0], low[1], low[0])]
    added = np.array([t for t in added if len(set(t)) == 3])
    vertices = mean_face().vertices_mm
    a, b, c = (vertices[added[:, k]] for k in range(3))
    facing_away = np.cross(b - a, c - a)[:, 2] > 0  # outward normals point to -z (see MeanFace)
    added[facing_away] = added[facing_away][:, ::-1]
    return np.concatenate([mean_face().triangles, added]).astype(np.int32)


@functools.cache
def face_uv() -> np.ndarray:
    """(478, 2) the UV layout: the mean face's front view, v down (image rows)."""
    return frontal_uv(mean_face().vertices_mm)


class PreviewDrawing:
    """The preview frame: the shaded meshes over the image, and on the right the first face's
    mesh from a fixed frontal camera (pose removed: only identity and expression move)."""

    def __init__(self, camera: np.ndarray):
        self.camera = camera

    def draw(self, image_rgb: np.ndarray, rows: Reconstruction) -> np.ndarray:
        height, width = image_rgb.shape[:2]
        out = image_rgb.copy()
        triangles = mean_face().triangles
        if len(rows):
            placed = to_camera(rows.vertices_cm.astype(np.float64) * 10.0, rows.rotation_rad, rows.translation_mm)
            for vertices in placed:
                rgb, mask = shade(vertices, triangles, self.camera, (width, height))
                out[mask] = (OVERLAY_ALPHA * rgb[mask] + (1 - OVERLAY_ALPHA) * out[mask]).astype(np.uint8)
        return np.concatenate([out, self._frontal(rows, height)], axis=1)

    @staticmethod
    def _frontal(rows: Reconstruction, height: int) -> np.ndarray:
        side = height - height % 2
        focal = FRONTAL_FOCAL * side
        camera = np.array([[focal, 0, side / 2], [0, focal, side / 2], [0, 0, 1]])
        if not len(rows):
            return np.zeros((height, side, 3), np.uint8)
        first = int(np.argmin(rows.face_id))
        distance = focal * FACE_HEIGHT_MM / (FRONTAL_FILL * side)
        vertices = rows.vertices_cm[first].astype(np.float64) * 10.0 + (0.0, 0.0, distance)
        rgb, _ = shade(vertices, mean_face().triangles, camera, (side, height))
        return rgb


class TextureWriter:
    """Each track's texture, unwrapped from the frame where it is most frontal, written as soon
    as that frame passes: ``<stem>.face<ID>.texture.png``, and the identity mesh using it,
    ``<stem>.face<ID>.obj`` + ``.mtl``. ``path_of(face_id, suffix)`` names each file, and
    ``claim(path)`` is told of it before it is written (to remove it if the job fails)."""

    def __init__(self, frontal_frames: dict[int, int], identities_cm: dict[int, np.ndarray],
                 path_of: Callable[[int, str], Path], claim: Callable[[Path], Path]):
        self.frontal_frames, self.identities_cm = frontal_frames, identities_cm
        self.path_of, self.claim = path_of, claim

    def offer(self, frame: media.Frame, batch: Landmarks) -> None:
        for row, face_id in enumerate(batch.face_id.tolist()):
            if self.frontal_frames.get(face_id) == frame.index:
                points = batch.landmarks_478[row].astype(np.float64)
                texture, _ = unwrap_texture(frame.image, points, closed_triangles(), face_uv(), TEXTURE_SIZE,
                                            depth=points[:, 2])
                self._write(face_id, texture)

    def _write(self, face_id: int, texture: np.ndarray) -> None:
        png, obj = self.path_of(face_id, ".texture.png"), self.path_of(face_id, ".obj")
        for path in (png, obj, material_path(obj)):
            self.claim(path)
        media.write_image(png, texture)
        uv_obj = face_uv() * (1.0, -1.0) + (0.0, 1.0)  # OBJ's v runs up
        write_obj(obj, self.identities_cm[face_id], mean_face().triangles, uv=uv_obj, texture_png=png)
