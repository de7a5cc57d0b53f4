"""What the stages that measure expression share (``reconstruct``, ``classify``): a landmarks
file of the input, each track's identity face and neutral measures from a first read of it,
and a second read, chunk by chunk or frame by frame beside the decoded media.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import formats, media
from ..blendshapes import Neutral, neutral_measures
from ..face3d import metric_faces
from ..geometry import camera_matrix
from ..results import Landmarks
from .common import ProgressCallback
from .landmarks import LandmarkOptions, landmarks_file

IDENTITY_SAMPLES = 256  # frames per track the identity is the median of (evenly spread)


@dataclass
class TrackSample:
    """What the first read keeps of one track: an evenly spread sample of its faces."""

    faces: list[np.ndarray] = field(default_factory=list)
    stride: int = 1
    seen: int = 0
    frontal: tuple[float, int] = (np.inf, -1)  # (|yaw| + |pitch| in rad, frame index)

    def add(self, face_mm: np.ndarray, rotation_rad: np.ndarray, frame_index: int) -> None:
        if self.seen % self.stride == 0:
            self.faces.append(face_mm)
            if len(self.faces) > IDENTITY_SAMPLES:  # keep every other one: still evenly spread
                self.faces, self.stride = self.faces[::2], self.stride * 2
        self.seen += 1
        self.frontal = min(self.frontal, (float(abs(rotation_rad[0]) + abs(rotation_rad[1])), frame_index))


@dataclass
class Identity:
    """One track's identity face (head frame, mm) and the neutral measures blendshapes start from."""

    face_mm: np.ndarray
    neutral: Neutral
    frontal_frame: int

    @classmethod
    def from_sample(cls, sample: TrackSample) -> Identity:
        faces = np.asarray(sample.faces)
        return cls(np.median(faces, axis=0), neutral_measures(faces, sample.seen), sample.frontal[1])


def metric_rows(batch: Landmarks, camera: np.ndarray) -> np.ndarray:
    return metric_faces(batch.landmarks_478, batch.rotation_rad, batch.translation_mm, camera)


def identities(landmarks_path: Path, camera: np.ndarray) -> dict[int, Identity]:
    """Each track's identity: the per-vertex median of its head-frame faces."""
    samples: dict[int, TrackSample] = {}
    for batch in formats.iter_batches(landmarks_path):
        faces = metric_rows(batch, camera)
        for row, face_id in enumerate(batch.face_id.tolist()):
            samples.setdefault(face_id, TrackSample()).add(faces[row], batch.rotation_rad[row],
                                                            int(batch.frame_index[row]))
    return {face_id: Identity.from_sample(sample) for face_id, sample in samples.items()}


def camera_of(landmarks_header: dict[str, Any]) -> np.ndarray:
    """The camera the landmarks' head poses were solved with."""
    source = landmarks_header["source"]
    return camera_matrix(source["width"], source["height"], landmarks_header["settings"].get("focal_px"))


@contextmanager
def landmarks_for(source: Path, output: Path, options: LandmarkOptions,
                   progress: ProgressCallback | None) -> Iterator[Path]:
    """A landmarks file of ``source``: itself if it is one, else made in a temporary folder
    beside ``output`` and removed afterwards."""
    if formats.stage_of(source) == "landmarks":
        formats.read_header(source)
        yield source
        return
    with tempfile.TemporaryDirectory(prefix=".reconstruct-", dir=output.parent) as folder:
        path = Path(folder) / f"{source.stem}.landmarks.parquet"
        landmarks_file(source, path, options, progress=progress)
        yield path


def rows_with_frames(landmarks_path: Path, media_path: Path, want_frames: bool) -> Iterator[tuple[Any, Landmarks]]:
    """Each landmarks chunk, or with ``want_frames`` each decoded frame and its rows."""
    batches = formats.iter_batches(landmarks_path)
    if not want_frames:
        yield from ((None, batch) for batch in batches)
        return
    batch = next(batches, Landmarks.empty())
    for frame in media.iter_frames(media_path, media.probe(media_path)):
        while len(batch) and batch.frame_index[-1] < frame.index:
            batch = next(batches, Landmarks.empty())
        yield frame, batch[batch.frame_index == frame.index]


def table_of(worker: Any, path: str | Path, stage: str, options_type: type, options: dict[str, Any]) -> Any:
    """The library form of a stage worker: run it into a temporary file and read the table back.

    ``options`` are ``options_type`` fields, and landmark options (``focal_px``, ``smooth``...)
    which go to its ``landmarks``; still images are mirror-averaged unless told otherwise.
    """
    landmark_keys = set(LandmarkOptions.__dataclass_fields__)
    marks = {"mirror_average": True, **{k: options.pop(k) for k in list(options) if k in landmark_keys}}
    opts = options_type(landmarks=LandmarkOptions(**marks), **options)
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / f"{Path(path).stem}.{stage}.parquet"
        worker(Path(path), output, opts)
        return formats.read_table(output)
