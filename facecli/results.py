"""Typed results: one row per (frame, face), NumPy columns whose shapes are checked on creation.

"No face" is an empty result, never ``None``. Serialization lives in :mod:`facecli.formats`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

import numpy as np

from .facemodel import IBUG68_FROM_MESH, five_points

T = TypeVar("T", bound="FaceTable")

EMBEDDING_DIM = 512  # ArcFace identity vectors (Faces.embedding)


@dataclasses.dataclass(kw_only=True)
class FaceTable:
    """Columns shared by every stage's result; subclasses add their own.

    ``SHAPES`` maps each column to its per-row shape and dtype; ``header`` holds the
    provenance (source media, backend, settings) written into the file's metadata.
    """

    frame_index: np.ndarray  # (N,) 0-based index of the decoded frame (files number frames from 1)
    timestamp_s: np.ndarray  # (N,) presentation time, seconds
    face_id: np.ndarray  # (N,) track id, stable across frames within a shot
    shot: np.ndarray  # (N,) 0-based shot number (cuts start a new shot)
    header: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    SHAPES: ClassVar[dict[str, tuple[tuple[int, ...], type]]] = {
        "frame_index": ((), np.int64),
        "timestamp_s": ((), np.float64),
        "face_id": ((), np.int64),
        "shot": ((), np.int64),
    }
    # Columns that may be absent (None): a result has them for all its rows or for none.
    OPTIONAL: ClassVar[dict[str, tuple[tuple[int, ...], type]]] = {}

    def __post_init__(self) -> None:
        n = len(np.asarray(self.frame_index).reshape(-1))
        for name, (shape, dtype) in {**self.SHAPES, **self.OPTIONAL}.items():
            if name in self.OPTIONAL and getattr(self, name) is None:
                continue
            value = np.asarray(getattr(self, name), dtype=dtype)
            if value.shape != (n, *shape):
                raise ValueError(f"{type(self).__name__}.{name}: expected shape {(n, *shape)}, got {value.shape}")
            setattr(self, name, value)

    def __len__(self) -> int:
        return len(self.frame_index)

    def __getitem__(self: T, index: Any) -> T:
        """Rows selected by a slice, an index array or a boolean mask."""
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1 or None)
        optional = {name: None if getattr(self, name) is None else getattr(self, name)[index] for name in self.OPTIONAL}
        return type(self)(**{name: getattr(self, name)[index] for name in self.SHAPES}, **optional, header=self.header)

    @classmethod
    def empty(cls: type[T], header: dict[str, Any] | None = None) -> T:
        return cls(**{name: np.zeros((0, *shape), dtype) for name, (shape, dtype) in cls.SHAPES.items()},
                   header=header or {})

    @classmethod
    def concat(cls: type[T], parts: list[T], header: dict[str, Any] | None = None) -> T:
        if not parts:
            return cls.empty(header)
        columns = {name: np.concatenate([getattr(p, name) for p in parts]) for name in cls.SHAPES}
        for name, (shape, dtype) in cls.OPTIONAL.items():
            # Kept when every part with rows has it (an empty part adds no rows either way).
            values = [getattr(p, name) if len(p) else np.zeros((0, *shape), dtype) for p in parts]
            columns[name] = None if any(v is None for v in values) else np.concatenate(values)
        return cls(**columns, header=header if header is not None else parts[0].header)

    @property
    def face_ids(self) -> np.ndarray:
        """The distinct track ids, sorted."""
        return np.unique(self.face_id)


@dataclasses.dataclass(kw_only=True)
class Faces(FaceTable):
    """Face detections. Keypoints (BlazeFace order): right eye, left eye, nose tip, mouth
    centre, right ear tragion, left ear tragion ("right" is the subject's: image left)."""

    score: np.ndarray  # (N,) detector confidence 0-1
    box_xywh: np.ndarray  # (N, 4) px: left, top, width, height
    keypoints_6: np.ndarray  # (N, 6, 2) px
    # (N, 512) unit ArcFace vector of the row's track (detect --embed), else None
    embedding: np.ndarray | None = None

    SHAPES: ClassVar = {
        **FaceTable.SHAPES,
        "score": ((), np.float32),
        "box_xywh": ((4,), np.float32),
        "keypoints_6": ((6, 2), np.float32),
    }
    OPTIONAL: ClassVar = {"embedding": ((EMBEDDING_DIM,), np.float32)}


class _HeadPose:
    """Yaw, pitch and roll for the tables that hold OpenFace's rotation (pose_Rx/Ry/Rz)."""

    rotation_rad: np.ndarray

    @property
    def head_pose_deg(self) -> np.ndarray:
        """(N, 3) yaw, pitch, roll in degrees: rotations about the camera's y, x and z axes."""
        rx, ry, rz = np.degrees(self.rotation_rad).T
        return np.stack([ry, rx, rz], axis=1).astype(np.float32)


@dataclasses.dataclass(kw_only=True)
class Landmarks(_HeadPose, FaceTable):
    """Dense landmarks and head pose.

    ``landmarks_478``: MediaPipe's face mesh with irises; x, y in px, z a relative depth in
    the same px scale (smaller is nearer the camera). Head pose is the mean face's pose in
    the camera frame (x right, y down, z forward): ``rotation_rad`` = (rx, ry, rz) with
    R = Rx·Ry·Rz as OpenFace's pose_Rx/Ry/Rz; ``translation_mm`` as pose_Tx/Ty/Tz.
    ``landmarks_68_mm``: the 68 iBUG points in camera coordinates, mm.
    """

    confidence: np.ndarray  # (N,) 0-1, agreement of the mesh with the mean face
    box_xywh: np.ndarray  # (N, 4) px, tight around the mesh
    landmarks_478: np.ndarray  # (N, 478, 3) px
    rotation_rad: np.ndarray  # (N, 3)
    translation_mm: np.ndarray  # (N, 3)
    landmarks_68_mm: np.ndarray  # (N, 68, 3)

    SHAPES: ClassVar = {
        **FaceTable.SHAPES,
        "confidence": ((), np.float32),
        "box_xywh": ((4,), np.float32),
        "landmarks_478": ((478, 3), np.float32),
        "rotation_rad": ((3,), np.float32),
        "translation_mm": ((3,), np.float32),
        "landmarks_68_mm": ((68, 3), np.float32),
    }

    @property
    def landmarks_68(self) -> np.ndarray:
        """(N, 68, 2) px in the iBUG 300-W layout (see :data:`facecli.facemodel.IBUG68_FROM_MESH`)."""
        return self.landmarks_478[:, IBUG68_FROM_MESH, :2]

    @property
    def landmarks_5(self) -> np.ndarray:
        """(N, 5, 2) px: eye centres, nose tip, mouth corners (ArcFace order)."""
        return five_points(self.landmarks_478)[..., :2]


# The 52 ARKit blendshapes (ARFaceAnchor.BlendShapeLocation raw values), in Live Link Face's
# column order; "Left"/"Right" are the subject's.
ARKIT_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawRight", "jawLeft", "jawOpen", "mouthClose", "mouthFunnel",
    "mouthPucker", "mouthRight", "mouthLeft", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft",
    "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)

# OpenFace 2.0's action units, in its column order; AU28 has presence only.
AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)
INTENSITY_AUS = tuple(au for au in AUS if au != 28)
EXPRESSIONS = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt")

# Face controls of a talking portrait, each 0-1 (0 = rest: lips together, eyes open). Names
# follow ARKit blendshapes where one exists; left/right pairs are symmetric except blinks.
FACE_CONTROLS = (
    "jaw_open", "lip_close", "lip_press", "lip_stretch", "lip_pucker", "lip_funnel",
    "upper_lip_raise", "lower_lip_down", "smile", "frown",
    "brow_raise", "brow_inner_up", "brow_down", "eye_wide", "eye_squint", "nose_sneer",
    "blink_left", "blink_right",
)


@dataclasses.dataclass(kw_only=True)
class Motion(FaceTable):
    """Per-frame motion of one animated face (``facecli animate``), one row per output frame.

    ``face_controls``: (N, len(FACE_CONTROLS)) weights 0-1 in :data:`FACE_CONTROLS` order.
    ``head_pose_deg``: yaw, pitch, roll added to the portrait's own pose, degrees, with the
    signs of :attr:`Landmarks.head_pose_deg`. ``gaze_deg``: eye yaw and pitch relative to the
    head, degrees (positive yaw towards the image left, positive pitch up). ``phone``: the
    ARPAbet phone sounding at the frame's time ('SIL' in pauses).
    """

    face_controls: np.ndarray
    head_pose_deg: np.ndarray
    gaze_deg: np.ndarray
    phone: np.ndarray

    SHAPES: ClassVar = {
        **FaceTable.SHAPES,
        "face_controls": ((len(FACE_CONTROLS),), np.float32),
        "head_pose_deg": ((3,), np.float32),
        "gaze_deg": ((2,), np.float32),
        "phone": ((), np.str_),
    }

    def control(self, name: str) -> np.ndarray:
        """(N,) one control's weights, e.g. ``motion.control("jaw_open")``."""
        return self.face_controls[:, FACE_CONTROLS.index(name)]


@dataclasses.dataclass(kw_only=True)
class Stabilization(FaceTable):
    """Per-frame transforms of ``facecli stabilize`` for one face, one row per source frame (and
    per output frame, unless the source's frame rate varies: docs/formats.md).

    ``transform_2x3`` maps source-frame px to output px (``cv2.warpAffine``'s matrix);
    ``inverse_2x3`` maps output px back to the source frame (paste processed crops back).
    ``status``: 0 the face was measured in this frame, 1 interpolated across a short gap,
    2 held (a long gap, or before the face appears in its shot).
    """

    transform_2x3: np.ndarray
    inverse_2x3: np.ndarray
    status: np.ndarray

    SHAPES: ClassVar = {
        **FaceTable.SHAPES,
        "transform_2x3": ((2, 3), np.float64),
        "inverse_2x3": ((2, 3), np.float64),
        "status": ((), np.int8),
    }


@dataclasses.dataclass(kw_only=True)
class _PosedFaces(_HeadPose, FaceTable):
    """The columns reconstruct and classify share with the landmarks: confidence, head pose
    (OpenFace's pose_R*, pose_T*) and the 68 iBUG points, px."""

    confidence: np.ndarray
    rotation_rad: np.ndarray
    translation_mm: np.ndarray
    landmarks_68: np.ndarray

    SHAPES: ClassVar = {
        **FaceTable.SHAPES,
        "confidence": ((), np.float32),
        "rotation_rad": ((3,), np.float32),
        "translation_mm": ((3,), np.float32),
        "landmarks_68": ((68, 2), np.float32),
    }


@dataclasses.dataclass(kw_only=True)
class Reconstruction(_PosedFaces):
    """Per-frame metric 3D faces of ``facecli reconstruct``.

    ``vertices_cm``: the 478 mesh points (MediaPipe topology, irises last) in the head frame,
    centimetres (x to the image right, y down, z away from the camera at zero pose, origin at
    the rigid points' centroid); ``R·v + t`` (with ``t`` in cm) places them in the camera.
    ``rotation_rad``/``translation_mm``: that head pose, as :class:`Landmarks` (OpenFace's
    pose_R*, pose_T*). ``blendshapes``: the 52 ARKit coefficients 0-1 in
    :data:`ARKIT_NAMES` order. ``landmarks_68``: iBUG points, px.
    Each track's identity (neutral) face is in the file header (``identities_cm``), and
    ``vertices_cm`` minus it is the expression.
    """

    blendshapes: np.ndarray
    vertices_cm: np.ndarray

    SHAPES: ClassVar = {
        **_PosedFaces.SHAPES,
        "blendshapes": ((52,), np.float32),
        "vertices_cm": ((478, 3), np.float32),
    }

    def blendshape(self, name: str) -> np.ndarray:
        """(N,) one coefficient, e.g. ``table.blendshape("jawOpen")``."""
        return self.blendshapes[:, ARKIT_NAMES.index(name)]


@dataclasses.dataclass(kw_only=True)
class Classification(_PosedFaces):
    """Per-frame action units and expressions of ``facecli classify``.

    ``au_intensity``: 0-5 for :data:`INTENSITY_AUS` (OpenFace's AUxx_r); ``au_presence``: 0/1
    for :data:`AUS` (AUxx_c). ``expressions``: probabilities in :data:`EXPRESSIONS` order.
    ``valence_arousal``: each in [-1, 1]. ``gaze_angle_rad``: OpenFace's gaze_angle_x/y (camera axes; 0, 0 looks into the
    camera). ``explanation``: one sentence (empty unless asked for).
    """

    au_intensity: np.ndarray
    au_presence: np.ndarray
    gaze_angle_rad: np.ndarray
    expressions: np.ndarray
    valence_arousal: np.ndarray
    explanation: np.ndarray

    SHAPES: ClassVar = {
        **_PosedFaces.SHAPES,
        "au_intensity": ((len(INTENSITY_AUS),), np.float32),
        "au_presence": ((len(AUS),), np.int8),
        "gaze_angle_rad": ((2,), np.float32),
        "expressions": ((len(EXPRESSIONS),), np.float32),
        "valence_arousal": ((2,), np.float32),
        "explanation": ((), np.str_),
    }

    def expression(self, name: str) -> np.ndarray:
        """(N,) one expression's probability, e.g. ``table.expression("happiness")``."""
        return self.expressions[:, EXPRESSIONS.index(name)]

    def au(self, number: int) -> np.ndarray:
        """(N,) one AU's intensity 0-5, e.g. ``table.au(12)``."""
        return self.au_intensity[:, INTENSITY_AUS.index(number)]
