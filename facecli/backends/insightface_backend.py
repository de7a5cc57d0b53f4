"""insightface's ONNX models on onnxruntime's CPU provider: SCRFD detection, 68-point 3D
landmarks (1k3d68), 106-point 2D landmarks (2d106det) and ArcFace identity embeddings
(w600k_r50), from the buffalo_l pack in the model directory (docs/backends.md).

insightface's own ``model_zoo`` loads each file, so the pre- and post-processing (input scaling,
SCRFD's anchor decoding and NMS, the landmark crop) are the package's. insightface is imported
only when a model is loaded, so ``facecli doctor`` can report it missing.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from typing import Any, ClassVar

import cv2
import numpy as np

from ..errors import BackendUnavailable
from ..facemodel import FIVE_POINT, mean_face
from ..geometry import umeyama
from ..results import EMBEDDING_DIM
from . import Backend, Detector, FrameDetections, LandmarkModel, LandmarkSession, models
from .sparse68 import mesh_from_68

PACK = "buffalo_l"
SCRFD_INPUT_PX = 640  # the network input insightface uses by default
SCRFD_MIN_FACE_PX = 16  # SCRFD's smallest anchors (stride 8): faces smaller in its input are missed
NMS_IOU = 0.4  # insightface's default
# facecli's landmark crops are squares about twice the face box (landmarks.CROP_FROM_DETECTION);
# insightface crops 1.5 times the box it is given, so it is given half the square.
BOX_FROM_ROI = 0.5
# 2d106det's points in iBUG 300-W's 68-point order: the table published with
# https://stackoverflow.com/a/67174339 and used unchanged by roop-unleashed's DMDNet plugin and
# (jaw and brows) LatentSync. 2d106det's layout: contour 0-32 (0 the chin), image-left eye
# 33-42 (corners 35, 39), brow 43-51, mouth 52-71, nose 72-86, image-right eye 87-96 (corners 89,
# 93), brow 97-105. Not checked on the real model here: its weights cannot be had offline.
IBUG68_FROM_2D106 = np.array([
    1, 10, 12, 14, 16, 3, 5, 7, 0, 23, 21, 19, 32, 30, 28, 26, 17,  # jaw, image left to right
    43, 48, 49, 51, 50, 102, 103, 104, 105, 101,  # brows, outer to inner, then inner to outer
    72, 73, 74, 86, 78, 79, 80, 85, 84,  # nose bridge top to tip, nostril base left to right
    35, 41, 42, 39, 37, 36, 89, 95, 96, 93, 91, 90,  # eyes from the image-left corner, upper lid first
    52, 64, 63, 71, 67, 68, 61, 58, 59, 53, 56, 55, 65, 66, 62, 70, 69, 57, 60, 54,  # outer then inner lip
], dtype=np.intp)
# Mean-face points where BlazeFace's ear tragions sit (the face oval at ear height): SCRFD has
# five points, and the faces format six, so the ears are the mean face's, posed on the five.
EAR_TRAGIONS = np.array([234, 454])


def _load(weights: models.Weights, kind: type) -> Any:
    """One insightface model_zoo model from the pack, checked to be of the expected kind."""
    from insightface import model_zoo

    path = models.locate(PACK, weights)
    if path is None:  # problem() said it was there; it went away since
        raise BackendUnavailable(models.problem(PACK, weights) or f"missing {weights.name}")
    with contextlib.redirect_stdout(sys.stderr):  # insightface 0.7 prints its providers; --json owns stdout
        model = model_zoo.get_model(str(path), providers=["CPUExecutionProvider"])
    if not isinstance(model, kind):
        raise BackendUnavailable(f"{path} is not a {weights.what} model (insightface reads it as "
                                 f"{type(model).__name__}); get the pack with: {models.download_command(PACK)}")
    return model


class _PackBackend(Backend):
    WEIGHTS: ClassVar[models.Weights]

    @classmethod
    def problem(cls) -> str | None:
        return models.problem(PACK, cls.WEIGHTS)

    @classmethod
    def weights_location(cls) -> str:
        return str(models.pack_dir(PACK) / cls.WEIGHTS.name)


class SCRFDDetector(_PackBackend, Detector):
    """SCRFD-10G (det_10g.onnx) on the whole frame, its input sized so that ``min_size`` faces
    still cover SCRFD's smallest anchors."""

    WEIGHTS = models.INSIGHTFACE_DETECTOR

    def __init__(self, min_score: float = 0.5, min_size: float = 40.0, max_faces: int = 0):
        from insightface.model_zoo import SCRFD

        self.min_score, self.min_size, self.max_faces = float(min_score), float(min_size), int(max_faces)
        self.model = _load(self.WEIGHTS, SCRFD)
        self.model.prepare(-1, det_thresh=self.min_score, nms_thresh=NMS_IOU)
        shape = self.model.session.get_inputs()[0].shape
        # A model exported at a fixed size runs only at that size (width, height).
        self.fixed_input = (shape[3], shape[2]) if all(isinstance(v, int) for v in shape[2:4]) else None

    def settings(self) -> dict[str, Any]:
        return {"min_score": self.min_score, "min_size": self.min_size, "max_faces": self.max_faces,
                "model": self.WEIGHTS.name}

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """Square network input (px, a multiple of 32): 640, or more when ``min_size`` faces
        would shrink below SCRFD's smallest anchors, never more than the frame itself."""
        if self.fixed_input:
            return self.fixed_input
        long_side = max(height, width)
        wanted = SCRFD_MIN_FACE_PX * long_side / self.min_size
        side = max(SCRFD_INPUT_PX, min(32 * math.ceil(wanted / 32), 32 * math.ceil(long_side / 32)))
        return side, side

    def detect(self, image_rgb: np.ndarray) -> FrameDetections:
        height, width = image_rgb.shape[:2]
        bgr = np.ascontiguousarray(image_rgb[..., ::-1])  # insightface takes OpenCV's BGR
        found, kps = self.model.detect(bgr, input_size=self.input_size(height, width), max_num=0)
        if not len(found):
            return FrameDetections.empty()
        boxes = np.column_stack([found[:, :2], found[:, 2:4] - found[:, :2]]).astype(np.float32)
        dets = FrameDetections(boxes, found[:, 4].astype(np.float32), keypoints_6(kps))
        wanted = (boxes[:, 2:].max(axis=1) >= self.min_size) & (dets.scores >= self.min_score)
        dets = dets[wanted]
        order = np.argsort(-dets.scores, kind="stable")
        return dets[order[: self.max_faces] if self.max_faces > 0 else order]


def keypoints_6(kps5: np.ndarray) -> np.ndarray:
    """SCRFD's five points (eyes, nose tip, mouth corners; the subject's right first) in the faces
    format's six: eyes, nose tip, mouth centre (between the corners), and the ear tragions of the
    mean face posed on the five by a similarity (estimates, not measurements)."""
    template = mean_face().vertices_mm[:, :2]
    out = np.zeros((len(kps5), 6, 2), np.float32)
    for i, five in enumerate(np.asarray(kps5, np.float64)):
        s, rotation, shift = umeyama(template[FIVE_POINT], five)
        out[i, :3] = five[:3]
        out[i, 3] = five[3:].mean(axis=0)
        out[i, 4:] = s * template[EAR_TRAGIONS] @ rotation.T + shift
    return out


class InsightFaceLandmarkModel(_PackBackend, LandmarkModel):
    """1k3d68.onnx: the 68 iBUG points in 3D, filled into the 478-point layout (sparse68)."""

    WEIGHTS = models.INSIGHTFACE_LANDMARKS
    POINTS = 68
    TO_IBUG68: np.ndarray | None = None  # the model's points in iBUG order (None: already)

    def __init__(self) -> None:
        from insightface.model_zoo import Landmark

        self.model = _load(self.WEIGHTS, Landmark)
        if self.model.lmk_num != self.POINTS:
            raise BackendUnavailable(f"{self.WEIGHTS.name} gives {self.model.lmk_num} points, not {self.POINTS}; "
                                     f"get the pack with: {models.download_command(PACK)}")

    def settings(self) -> dict[str, Any]:
        return {"model": self.WEIGHTS.name}

    def open_session(self, video: bool) -> LandmarkSession:
        return _LandmarkSession(self.model, self.TO_IBUG68)


class InsightFace106LandmarkModel(InsightFaceLandmarkModel):
    """2d106det.onnx: 106 points in 2D; the 68 iBUG points among them (IBUG68_FROM_2D106) are
    filled into the 478-point layout (sparse68), depth from the mean face."""

    WEIGHTS = models.INSIGHTFACE_LANDMARKS_106
    POINTS = 106
    TO_IBUG68 = IBUG68_FROM_2D106


class _LandmarkSession(LandmarkSession):
    """Stateless: every frame's crop is placed by the caller (the last fit or a detection)."""

    def __init__(self, model: Any, to_ibug68: np.ndarray | None):
        self.model, self.to_ibug68 = model, to_ibug68

    def fit(self, image_rgb: np.ndarray, roi_xywh: np.ndarray) -> np.ndarray | None:
        from insightface.app.common import Face

        x, y, side = (float(v) for v in roi_xywh[:3])
        half = side * BOX_FROM_ROI / 2
        cx, cy = x + side / 2, y + side / 2
        face = Face(bbox=np.array([cx - half, cy - half, cx + half, cy + half], np.float32))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # insightface's own head-pose fit, on numpy's old lstsq
            points = self.model.get(np.ascontiguousarray(image_rgb[..., ::-1]), face)
        return mesh_from_68(points if self.to_ibug68 is None else points[self.to_ibug68])


class ArcFaceEmbedder(_PackBackend):
    """w600k_r50.onnx: a 512-d identity vector of a face on an ArcFace-aligned 112 px crop.

    The crop is aligned by a similarity from the detector's eyes, nose tip and mouth centre to
    ArcFace's template (its two mouth corners averaged), so MediaPipe's and SCRFD's detections
    both serve.
    """

    WEIGHTS = models.INSIGHTFACE_EMBEDDING

    def __init__(self) -> None:
        from insightface.model_zoo import ArcFaceONNX
        from insightface.utils.face_align import arcface_dst

        self.model = _load(self.WEIGHTS, ArcFaceONNX)
        if self.model.output_shape[-1] != EMBEDDING_DIM:
            raise BackendUnavailable(f"{self.WEIGHTS.name} gives {self.model.output_shape[-1]}-d vectors, not "
                                     f"{EMBEDDING_DIM}; get the pack with: {models.download_command(PACK)}")
        self.size = int(self.model.input_size[0])
        template = np.asarray(arcface_dst, np.float64) * self.size / 112.0
        self.template = np.vstack([template[:3], template[3:].mean(axis=0)])

    def settings(self) -> dict[str, Any]:
        return {"model": self.WEIGHTS.name}

    def embed(self, image_rgb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """(M, 512) unit vectors for faces with ``keypoints`` (M, 6, 2) px in the faces format."""
        if not len(keypoints):
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        bgr = np.ascontiguousarray(image_rgb[..., ::-1])
        crops = []
        for points in np.asarray(keypoints, np.float64):
            s, rotation, shift = umeyama(points[:4], self.template)
            warp = np.column_stack([s * rotation, shift])
            crops.append(cv2.warpAffine(bgr, warp, (self.size, self.size), borderValue=0.0))
        vectors = np.asarray(self.model.get_feat(crops), np.float32).reshape(len(crops), -1)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
