"""A portrait to move: its image and face mesh, and the renderer that moves it.

Shared by ``animate`` (motion from speech) and ``reenact`` (motion from a driving face): the
portrait's mesh is deformed in the face's own frame (:mod:`facecli.face_rig`), the image
follows through a dense warp (:mod:`facecli.meshwarp`), and what a warp cannot show is painted:
the mouth interior (:mod:`facecli.mouth`) and closing eyelids (:mod:`facecli.eyelids`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import media
from .errors import InputError, NoFaceFound, UsageError
from .eyelids import LidPainter
from .face_rig import FaceRig
from .meshwarp import MeshWarp
from .mouth import MouthPainter
from .results import FACE_CONTROLS, Landmarks
from .stages.landmarks import landmarks

CROP_FACE_FRACTION = 0.42  # with crop, the face box spans this fraction of the output side


@dataclass
class Portrait:
    image: np.ndarray  # HxWx3 uint8 RGB, even width and height
    landmarks_478: np.ndarray  # (478, 3) px
    face_id: int


def pick_face(marks: Landmarks, face_id: int | None, path: Path, what: str = "portrait") -> int:
    """The row of the wanted face: ``face_id``, or the largest face."""
    if not len(marks):
        raise NoFaceFound(f"no face found in the {what}; use one with a visible face", path)
    if face_id is None:
        return int(np.argmax(marks.box_xywh[:, 2] * marks.box_xywh[:, 3]))
    rows = np.flatnonzero(marks.face_id == face_id)
    if not rows.size:
        raise UsageError(f"no face with id {face_id} in the {what}; it has ids "
                         f"{', '.join(map(str, np.unique(marks.face_id).tolist()))}", path)
    return int(rows[0])


def check_side(size: int) -> None:
    """UsageError unless ``size`` (an output side, px) is even (H.264 in yuv420p) and sane."""
    if not 64 <= size <= 4096 or size % 2:
        raise UsageError(f"--size must be an even number of px within 64-4096, got {size}")


def crop_transform(box_xywh: np.ndarray, size: int) -> np.ndarray:
    """(2, 3) affine from the image to a ``size`` square around the face box."""
    x, y, w, h = box_xywh
    scale = size / (max(w, h) / CROP_FACE_FRACTION)
    cx, cy = x + w / 2, y + h / 2 - 0.05 * h  # a little above the box centre: room for hair
    return np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]])


def apply_transform(image: np.ndarray, points: np.ndarray, affine: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The image and its (N, 3) landmarks moved by a crop transform (depth scaled alike)."""
    scale = affine[0, 0]
    out = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_REPLICATE)
    moved = np.concatenate([points[:, :2] @ affine[:, :2].T + affine[:, 2], points[:, 2:] * scale], axis=1)
    return out, moved


def even(image: np.ndarray) -> np.ndarray:
    """The image trimmed to even width and height (what H.264 in yuv420p needs)."""
    h, w = image.shape[:2]
    return np.ascontiguousarray(image[: h - h % 2, : w - w % 2])


def load_portrait(path: Path, crop: bool = False, size: int = 512, face_id: int | None = None) -> Portrait:
    """The portrait (cropped to the face with ``crop``, else trimmed to even size) and its mesh."""
    path = Path(path)
    if not media.is_image_path(path):
        raise InputError("a portrait must be an image (jpg, png, webp, bmp, tiff)", path)
    image = media.read_image(path)
    marks = landmarks(path)
    row = pick_face(marks, face_id, path)
    points = marks.landmarks_478[row].astype(np.float64)
    if crop:
        image, points = apply_transform(image, points, crop_transform(marks.box_xywh[row], size), size)
    return Portrait(even(image), points, int(marks.face_id[row]))


class PortraitRenderer:
    """Renders frames of one portrait: from face controls (``render``) or from a deformed
    face-frame mesh (``render_face``)."""

    def __init__(self, portrait: Portrait):
        h, w = portrait.image.shape[:2]
        self.rig = FaceRig(portrait.landmarks_478)
        self.head_ring_mm = self.rig.head_ring_mm()
        moving = np.concatenate([portrait.landmarks_478[:, :2], self.rig.to_image(self.head_ring_mm)[:, :2]])
        self.warp = MeshWarp(moving, self.rig.fixed_ring_px(), w, h)
        self.mouth = MouthPainter(portrait.image, portrait.landmarks_478)
        self.lids = LidPainter(portrait.image, portrait.landmarks_478)
        self.source = self.mouth.source_for_warp()
        self._blinks = [FACE_CONTROLS.index("blink_right"), FACE_CONTROLS.index("blink_left")]

    def render(self, controls: np.ndarray, head_pose_deg: np.ndarray, gaze_deg: np.ndarray) -> np.ndarray:
        face_mm = self.rig.deform_mm(controls, gaze_deg)
        return self.render_face(face_mm, head_pose_deg, tuple(controls[self._blinks]))

    def render_face(self, face_mm: np.ndarray, head_pose_deg: np.ndarray,
                    lid_closure: tuple[float, float]) -> np.ndarray:
        """A frame with the mesh at ``face_mm`` (face frame), turned by head_pose_deg; the lids
        (right, left) painted closed by ``lid_closure`` (0-1)."""
        face = self.rig.to_image(face_mm, head_pose_deg)
        ring = self.rig.to_image(self.head_ring_mm, head_pose_deg)
        frame = self.warp.warp(self.source, np.concatenate([face[:, :2], ring[:, :2]]))
        self.mouth.paint(frame, face)
        self.lids.paint(frame, face, lid_closure)
        return frame
