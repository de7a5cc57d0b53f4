"""What the stages that measure expression share (``reconstruct``, ``classify``).

1. :func:`prepared`: a landmarks file of the input (made beside the output, or the input
   itself), the camera, and each track's identity face and neutral measures from a first read.
2. :func:`stream_rows`: a second read, chunk by chunk or frame by frame beside the decoded
   media, each stage turning landmark rows into its own rows; the table is written in chunks,
   the stage's other files by its :class:`Extras`, and a failed job removes all of them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import formats, media
from ..blendshapes import Neutral, measure_blendshapes, neutral_measures
from ..errors import NoFaceFound, OutputError
from ..face3d import metric_faces
from ..facemodel import IBUG68_FROM_MESH
from ..geometry import camera_matrix
from ..results import FaceTable, Landmarks
from .common import FileStats, PreviewSink, ProgressCallback, stream_table
from .landmarks import LandmarkOptions, landmarks_file, options_from, resolve_source
from .tracks import frames_with_rows

IDENTITY_SAMPLES = 256  # frames per track the identity is the median of (evenly spread)


@dataclass
class TrackSample:
    """What the first read keeps of one track: an evenly spread sample of its faces."""

    faces: list[np.ndarray] = field(default_factory=list)
    stride: int = 1
    seen: int = 0
    frontal: tuple[float, int] = (np.inf, -1)  # (|yaw| + |pitch| in rad, frame index)
    last_frame: int = -1

    def add(self, face_mm: np.ndarray, rotation_rad: np.ndarray, frame_index: int) -> None:
        if self.seen % self.stride == 0:
            self.faces.append(np.array(face_mm, np.float32))  # a copy: a view would pin its whole chunk
            if len(self.faces) > IDENTITY_SAMPLES:  # keep every other one: still evenly spread
                self.faces, self.stride = self.faces[::2], self.stride * 2
        self.seen += 1
        self.last_frame = frame_index
        self.frontal = min(self.frontal, (float(abs(rotation_rad[0]) + abs(rotation_rad[1])), frame_index))


@dataclass
class Identity:
    """One track's identity face (head frame, mm), its neutral measures, and where it is seen."""

    face_mm: np.ndarray
    neutral: Neutral
    frames_seen: int
    frontal_frame: int
    last_frame: int

    @classmethod
    def from_sample(cls, sample: TrackSample) -> Identity:
        faces = np.asarray(sample.faces, np.float64)
        return cls(np.median(faces, axis=0), neutral_measures(faces, sample.seen), sample.seen, sample.frontal[1],
                   sample.last_frame)


def metric_rows(batch: Landmarks, camera: np.ndarray) -> np.ndarray:
    return metric_faces(batch.landmarks_478, batch.rotation_rad, batch.translation_mm, camera)


def identities(landmarks_path: Path, camera: np.ndarray) -> dict[int, Identity]:
    """Each track's identity: the per-vertex median of its head-frame faces.

    A shot cut ends every track (the tracker gives the faces after it new ids), so the
    samples of a shot's tracks become identities at its end: memory holds one shot's
    samples, however many shots the video has.
    """
    found: dict[int, Identity] = {}
    samples: dict[int, TrackSample] = {}
    shot = None
    for batch in formats.iter_batches(landmarks_path):
        faces = metric_rows(batch, camera)
        for row, (face_id, row_shot) in enumerate(zip(batch.face_id.tolist(), batch.shot.tolist())):
            if row_shot != shot:
                found.update(_finished(samples))
                samples, shot = {}, row_shot
            samples.setdefault(face_id, TrackSample()).add(faces[row], batch.rotation_rad[row],
                                                           int(batch.frame_index[row]))
    found.update(_finished(samples))
    return found


def _finished(samples: dict[int, TrackSample]) -> dict[int, Identity]:
    return {face_id: Identity.from_sample(sample) for face_id, sample in samples.items()}


def readings(batch: Landmarks, camera: np.ndarray, known: dict[int, Identity]) -> tuple[np.ndarray, list]:
    """Each row's head-frame face (N, 478, 3) mm, and per track (row mask, its Reading)."""
    faces = metric_rows(batch, camera)
    per_track = []
    for face_id in np.unique(batch.face_id):
        rows = batch.face_id == face_id
        per_track.append((rows, measure_blendshapes(faces[rows], known[int(face_id)].neutral)))
    return faces, per_track


def posed_columns(batch: Landmarks) -> dict[str, np.ndarray]:
    """The columns reconstruct and classify copy from the landmarks (see results._PosedFaces)."""
    return {"frame_index": batch.frame_index, "timestamp_s": batch.timestamp_s, "face_id": batch.face_id,
            "shot": batch.shot, "confidence": batch.confidence, "rotation_rad": batch.rotation_rad,
            "translation_mm": batch.translation_mm, "landmarks_68": batch.landmarks_478[:, IBUG68_FROM_MESH, :2]}


def sibling(output: Path, suffix: str) -> Path:
    """``<stem><suffix>`` beside a stage file ``<stem>.<stage>.<parquet|csv>``."""
    stem = output.name.removesuffix(output.suffix).removesuffix(f".{formats.stage_of(output)}")
    return output.with_name(stem + suffix)


def camera_of(landmarks_header: dict[str, Any]) -> np.ndarray:
    """The camera the landmarks' head poses were solved with."""
    source = landmarks_header["source"]
    return camera_matrix(source["width"], source["height"], landmarks_header["settings"].get("focal_px"))


@dataclass
class Prepared:
    """An input ready for the second read."""

    source: Path  # what the job was given
    landmarks_path: Path
    media_path: Path
    info: media.MediaInfo
    camera: np.ndarray
    known: dict[int, Identity]
    landmarks_header: dict[str, Any]

    def header(self, stage: str, settings: dict[str, Any], extra_inputs: tuple[Path, ...] = ()) -> dict[str, Any]:
        used = {**settings, "focal_px": float(self.camera[0, 0]), "landmarks_used": self.landmarks_header["settings"]}
        return formats.make_header(stage, self.landmarks_header["backend"], used, self.media_path, self.info,
                                   self.source, extra_inputs)


@contextmanager
def prepared(source: Path, output: Path, options: LandmarkOptions,
             progress: ProgressCallback | None) -> Iterator[Prepared]:
    """The landmarks of ``source`` (itself if it is a landmarks file, else made in a temporary
    folder beside ``output``, removed afterwards), its camera and each track's identity."""
    source = Path(source)
    given = formats.stage_of(source) == "landmarks"
    media_path, _ = resolve_source(source, "landmarks" if given else "faces")
    with _landmarks_of(source, output, options, progress, given) as landmarks_path:
        header = formats.read_header(landmarks_path)
        camera = camera_of(header)
        known = identities(landmarks_path, camera)
        if not known:
            hint = "the landmarks file holds no face rows; re-run landmarks" if given else \
                "check the file, or lower --min-score"
            raise NoFaceFound(f"no face found: {hint}", source)
        yield Prepared(source, landmarks_path, media_path, media.probe(media_path), camera, known, header)


@contextmanager
def _landmarks_of(source: Path, output: Path, options: LandmarkOptions, progress: ProgressCallback | None,
                  given: bool) -> Iterator[Path]:
    if given:
        formats.read_header(source)
        yield source
        return
    try:
        folder = tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent)
    except OSError as exc:
        raise OutputError(f"cannot write in this folder ({exc.strerror}); choose another -o", output.parent) from exc
    try:
        path = Path(folder) / f"{source.stem}.landmarks.parquet"
        landmarks_file(source, path, options, progress=progress)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Extras:
    """A stage's files besides its table. ``add`` sees every frame's rows; ``close`` finishes
    the files and returns header entries for the table; ``abort`` drops them. Every path put in
    ``written`` is removed if the job fails."""

    def __init__(self) -> None:
        self.written: list[Path] = []

    def claim(self, path: Path) -> Path:
        self.written.append(path)
        return path

    def add(self, frame: media.Frame | None, batch: Landmarks, rows: FaceTable) -> None:
        """Called with every frame's (or chunk's) rows."""

    def close(self) -> dict[str, Any]:
        return {}

    def abort(self) -> None:
        for path in reversed(self.written):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def stream_rows(prep: Prepared, output: Path, stage: str, header: dict[str, Any],
                rows_of: Callable[[media.Frame | None, Landmarks], FaceTable], extras: Extras,
                want_frames: bool, preview: Path | None = None,
                draw: Callable[[np.ndarray, Any], np.ndarray] | None = None) -> FileStats:
    """The second read: rows into ``output`` in chunks (bounded memory), frames to the preview,
    everything to ``extras``; the table is written last."""
    sink = PreviewSink(preview, prep.info) if preview else None
    writer = formats.TableWriter(output, stage, header)
    try:
        frames = frames_with_rows(prep.landmarks_path, prep.media_path, prep.info) if want_frames or preview else \
            ((None, batch) for batch in formats.iter_batches(prep.landmarks_path))
        stats = stream_table(_seen_by(extras, rows_of, frames), writer, sink, draw)
        updates = extras.close()
        if sink:
            sink.close()
            sink = None
            extras.claim(preview)
        writer.close(face_ids=stats.faces, **updates)
    except BaseException as exc:
        writer.abort(exc)
        if sink:
            sink.close(exc)
        extras.abort()
        raise
    stats.frames = stats.frames or int(prep.info.frame_count or 1)
    return stats


def _seen_by(extras: Extras, rows_of: Callable[[media.Frame | None, Landmarks], FaceTable],
             frames: Iterator[tuple[media.Frame | None, Landmarks]]) -> Iterator[tuple[media.Frame | None, FaceTable]]:
    """Each frame's stage rows, shown to ``extras`` as they are made."""
    for frame, batch in frames:
        rows = rows_of(frame, batch)
        extras.add(frame, batch, rows)
        yield frame, rows


def table_of(worker: Any, path: str | Path, stage: str, options_type: type, options: dict[str, Any],
             files: tuple[str, ...] = ()) -> Any:
    """The library form of a stage worker: run it into a temporary file and read the table back.

    ``options`` are ``options_type`` fields, and landmark and detection options (``focal_px``,
    ``min_score``, ...) which go to its ``landmarks``; still images are mirror-averaged unless
    told otherwise. Options in ``files`` only make files beside the table: refused here.
    """
    asked = [name for name in files if options.get(name)]
    if asked:
        raise ValueError(f"{', '.join(asked)} write files: call the stage's *_file function with an output path")
    own = {k: options.pop(k) for k in list(options) if k in options_type.__dataclass_fields__}
    opts = options_type(landmarks=options_from({"mirror_average": True, **options}), **own)
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / f"{Path(path).stem}.{stage}.parquet"
        worker(Path(path), output, opts)
        return formats.read_table(output)
