"""Backends behind one small registry keyed by (stage, name).

A backend module is imported only when it is used, so ``import facecli`` stays light and a
missing optional package breaks only the backend that needs it.
"""

from __future__ import annotations

import abc
import importlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import BackendUnavailable, UsageError


@dataclass(frozen=True)
class FrameDetections:
    """Faces found in one image: boxes (M, 4) x, y, w, h px; scores (M,); keypoints (M, 6, 2) px."""

    boxes_xywh: np.ndarray
    scores: np.ndarray
    keypoints_6: np.ndarray

    @classmethod
    def empty(cls) -> FrameDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 6, 2), np.float32))

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: Any) -> FrameDetections:
        return FrameDetections(self.boxes_xywh[index], self.scores[index], self.keypoints_6[index])

    @classmethod
    def concat(cls, parts: list[FrameDetections]) -> FrameDetections:
        if not parts:
            return cls.empty()
        names = ("boxes_xywh", "scores", "keypoints_6")
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in names))


class Backend(abc.ABC):
    """What every backend says about itself for ``facecli doctor``."""

    # Weights inside a pip package and no state between images: ``create`` hands the same
    # instance to every file of a thread, so a batch builds its graphs once, not per file.
    reusable: ClassVar[bool] = False

    @classmethod
    def problem(cls) -> str | None:
        """Why this backend cannot run here (missing package or weights), or None."""
        return None

    @classmethod
    def weights_location(cls) -> str:
        return "built in (ships inside a pip package)"

    def settings(self) -> dict[str, Any]:
        """The settings that change results, recorded in every output file's header."""
        return {}


class Detector(Backend):
    # Whether detect_near re-finds known faces for much less than a detect: a video's frames
    # between full scans use it (facecli.stages.detect.KeyframeDetector); else every frame is scanned.
    follows: ClassVar[bool] = False

    @abc.abstractmethod
    def detect(self, image_rgb: np.ndarray) -> FrameDetections:
        """Every face in one RGB uint8 image; stateless, so any frame can be redone alone."""

    def detect_near(self, image_rgb: np.ndarray, boxes_xywh: np.ndarray) -> FrameDetections:
        """The faces last seen at ``boxes_xywh`` (px, the frame before) found again, at most one
        per box (only where ``follows``)."""
        raise NotImplementedError(f"{type(self).__name__} does not follow faces")


class LandmarkSession(abc.ABC):
    """Per-face state of a landmark model (tracking mode keeps the last fit)."""

    @abc.abstractmethod
    def fit(self, image_rgb: np.ndarray, roi_xywh: np.ndarray) -> np.ndarray | None:
        """(478, 3) px landmarks of the face inside the square ``roi_xywh``, or None if none is there."""

    def fit_frame(self, frame: Any, roi_xywh: np.ndarray) -> np.ndarray | None:
        """:meth:`fit` on a ``media.Frame``; a session that needs only a crop takes it with
        ``frame.crop_rgb`` and spares converting the whole frame."""
        return self.fit(frame.image, roi_xywh)

    def reset(self) -> None:  # noqa: B027 - sessions without state have nothing to forget
        """Forget the last face: the session is reused for another track."""

    def close(self) -> None:  # noqa: B027 - most sessions hold nothing to release
        pass


class LandmarkModel(Backend):
    @abc.abstractmethod
    def open_session(self, video: bool) -> LandmarkSession:
        """A session for one face track (video=True) or for independent images."""


_REGISTRY: dict[tuple[str, str], str] = {
    ("detect", "mediapipe"): "facecli.backends.mediapipe_backend:BlazeFaceDetector",
    ("landmarks", "mediapipe"): "facecli.backends.mediapipe_backend:FaceMeshModel",
    # Optional, with bring-your-own weights (docs/backends.md):
    ("detect", "insightface"): "facecli.backends.insightface_backend:SCRFDDetector",
    ("landmarks", "insightface"): "facecli.backends.insightface_backend:InsightFaceLandmarkModel",
    ("landmarks", "insightface106"): "facecli.backends.insightface_backend:InsightFace106LandmarkModel",
    ("landmarks", "fan"): "facecli.backends.fan_backend:FANLandmarkModel",
    ("landmarks", "fan3d"): "facecli.backends.fan_backend:FAN3DLandmarkModel",
    ("embed", "insightface"): "facecli.backends.insightface_backend:ArcFaceEmbedder",
    ("detect", "fake"): "facecli.backends.fake:FakeDetector",
    ("landmarks", "fake"): "facecli.backends.fake:FakeLandmarkModel",
}


_HIDDEN = {"fake"}  # the test double: usable from Python, not offered to users


def names(stage: str, hidden: bool = False) -> list[str]:
    """Backend names for a stage, default first."""
    return [name for (st, name) in _REGISTRY if st == stage and (hidden or name not in _HIDDEN)]


def check_name(stage: str, name: str, hidden: bool = True) -> None:
    """UsageError for a name no backend of this stage has (``hidden=False``: nor a test double)."""
    if name not in names(stage, hidden=hidden):
        raise UsageError(f"unknown {stage} backend {name!r}; choose one of: {', '.join(names(stage))}")


def backend_class(stage: str, name: str) -> type[Backend]:
    check_name(stage, name)
    module_name, class_name = _REGISTRY[(stage, name)].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"{stage} backend {name!r} needs a package that is not installed: {exc}") from exc
    return getattr(module, class_name)


MAX_REUSED = 8  # reusable instances kept per thread (one per distinct settings)
_reused = threading.local()  # MediaPipe graphs must not be called from two threads at once


def create(stage: str, name: str, **settings: Any) -> Any:
    """An instance of the named backend; one clear error line if it cannot run here. A
    ``reusable`` backend is built once per thread and settings, and handed out again."""
    cls = backend_class(stage, name)
    problem = cls.problem()
    if problem:
        raise BackendUnavailable(f"{stage} backend {name!r} cannot run: {problem}")
    if not cls.reusable:
        return cls(**settings)
    cache: OrderedDict = _reused.__dict__.setdefault("instances", OrderedDict())
    key = (stage, name, tuple(sorted(settings.items())))
    if key not in cache:
        cache[key] = cls(**settings)
        if len(cache) > MAX_REUSED:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]


@dataclass(frozen=True)
class BackendStatus:
    stage: str
    name: str
    usable: bool
    detail: str
    weights: str


def describe() -> list[BackendStatus]:
    """Every registered backend and whether it can run here (for ``facecli doctor``)."""
    rows = []
    for stage, name in _REGISTRY:
        try:
            cls = backend_class(stage, name)
            problem, weights = cls.problem(), cls.weights_location()
        except BackendUnavailable as exc:
            problem, weights = str(exc), "-"
        rows.append(BackendStatus(stage, name, problem is None, problem or "ready", weights))
    return rows
