"""``classify``: action units, expressions, valence/arousal and gaze per tracked face and frame,
with the reasoning written out.

The geometry is ``reconstruct``'s (:mod:`facecli.stages.identity`): landmarks, each track's
neutral from a first read, then per frame the pose-free measures against that neutral
(:mod:`facecli.blendshapes`), read as FACS action units (:mod:`facecli.action_units`) and
turned into expressions by prototype rules (:mod:`facecli.emotions`). With ``model``, an ONNX
image classifier on aligned face crops gives the expression probabilities instead
(:mod:`facecli.onnx_model`); the AUs stay geometric.

Outputs: ``<stem>.classify.parquet`` (or OpenFace-style CSV); with ``segments``,
``<stem>.segments.csv`` (expression episodes: onset, apex, offset); each track's dominant
expression and its share of the frames in the header (``summary``) and the batch report.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import media
from ..action_units import MAX_INTENSITY, PRESENT_AT, activations, asymmetry
from ..atomic import atomic_output
from ..emotions import EpisodeFinder, Segment, TrackSummary, explain, probabilities, valence_arousal
from ..face3d import rotation_matrices
from ..onnx_model import ImageClassifier, align_crops, load_classifier
from ..results import AUS, EXPRESSIONS, INTENSITY_AUS, Classification, Landmarks
from .common import FileStats, ProgressCallback
from .expression import Extras, Prepared, posed_columns, prepared, readings, sibling, stream_rows, table_of
from .landmarks import LandmarkOptions


@dataclass(frozen=True)
class ClassifyOptions:
    """Settings of the classify stage (the CLI's options, by the same names)."""

    landmarks: LandmarkOptions = field(default_factory=lambda: LandmarkOptions(mirror_average=True))
    explain: bool = False  # one sentence per face and frame (and per episode with segments)
    segments: bool = False  # <stem>.segments.csv: expression episodes
    model: str | None = None  # an ONNX expression classifier with its YAML sidecar


# The eyes' straight-ahead, up from the head frame's forward: the mean face's zero pitch has the
# chin about 13 deg further back than faces looking into a camera (docs/mean_face.md; the
# astronaut's and Grace Hopper's portraits read 16 and 10 deg of head pitch while they look into it).
EYES_AHEAD_UP_DEG = 13.0


def gaze_angles(gaze_deg: np.ndarray, rotation_rad: np.ndarray) -> np.ndarray:
    """Eye-in-head yaw/pitch (degrees, :func:`facecli.blendshapes.gaze_deg`) and head pose ->
    OpenFace's gaze_angle_x/y (radians): the gaze direction in the camera, 0, 0 into the lens,
    x > 0 towards the image right, y > 0 downwards."""
    yaw, pitch = np.radians(gaze_deg).T
    pitch = pitch + np.radians(EYES_AHEAD_UP_DEG)
    # head frame: yaw > 0 looks to the subject's right (image left, -x), pitch > 0 up (-y)
    direction = np.stack([-np.sin(yaw) * np.cos(pitch), -np.sin(pitch), -np.cos(yaw) * np.cos(pitch)], axis=1)
    seen = np.einsum("nij,nj->ni", rotation_matrices(rotation_rad), direction)
    return np.stack([np.arctan2(seen[:, 0], -seen[:, 2]), np.arctan2(seen[:, 1], -seen[:, 2])], 1).astype(np.float32)


class _Run(Extras):
    """One job's second read: per row AUs, expressions, valence/arousal, gaze and the
    explanation; the episodes and each track's summary as the rows go by."""

    def __init__(self, prep: Prepared, output: Path, options: ClassifyOptions, model: ImageClassifier | None):
        super().__init__()
        self.prep, self.output, self.options, self.model = prep, output, options, model
        self.summary, self.episodes = TrackSummary(), EpisodeFinder()

    def rows(self, frame: media.Frame | None, batch: Landmarks) -> Classification:
        n = len(batch)
        act, asym = np.zeros((n, len(AUS)), np.float32), np.zeros(n, np.float32)
        gaze = np.zeros((n, 2), np.float32)
        for rows, reading in readings(batch, self.prep.camera, self.prep.known)[1]:
            act[rows], asym[rows], gaze[rows] = activations(reading), asymmetry(reading), reading.gaze_deg
        probs = self.model.predict(align_crops(frame.image, batch.landmarks_478, self.model.spec)) \
            if self.model and n else probabilities(act, asym)
        intensity = act * MAX_INTENSITY
        by = f"the model ({Path(self.options.model).name})" if self.model else None
        words = [explain(i, p, a, by) if self.options.explain else "" for i, p, a in zip(intensity, probs, asym)]
        return Classification(
            **posed_columns(batch), au_intensity=intensity[:, [AUS.index(au) for au in INTENSITY_AUS]],
            au_presence=(intensity >= PRESENT_AT).astype(np.int8), gaze_angle_rad=gaze_angles(gaze, batch.rotation_rad),
            expressions=probs, valence_arousal=valence_arousal(probs), explanation=np.array(words, dtype=np.str_),
        )

    def add(self, frame: media.Frame | None, batch: Landmarks, rows: Classification) -> None:
        self.summary.push(rows.face_id, rows.expressions)
        for row in range(len(rows)):
            self.episodes.push(int(rows.face_id[row]), int(rows.frame_index[row]), float(rows.timestamp_s[row]),
                               rows.expressions[row], str(rows.explanation[row]))

    def close(self) -> dict[str, Any]:
        if self.options.segments:
            write_segments(self.claim(sibling(self.output, ".segments.csv")), self.episodes.finish())
        return {"summary": self.summary.summary()}


SEGMENT_COLUMNS = ("face_id", "expression", "onset_frame", "apex_frame", "offset_frame", "onset_s", "apex_s",
                   "offset_s", "peak", "explanation")


def write_segments(path: Path, segments: list[Segment]) -> None:
    """Episodes as CSV (frames numbered from 1, as in the stage files), atomically."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(SEGMENT_COLUMNS)
        for seg in segments:
            writer.writerow([seg.face_id, seg.expression, seg.onset_frame + 1, seg.apex_frame + 1,
                             seg.offset_frame + 1, f"{seg.onset_s:.3f}", f"{seg.apex_s:.3f}", f"{seg.offset_s:.3f}",
                             f"{seg.peak:.3f}", seg.explanation])


def draw_classification(image_rgb: np.ndarray, rows: Classification) -> np.ndarray:
    """The preview: each face's box, top expression and strongest AUs."""
    out = image_rgb.copy()
    for points, probs, intensity in zip(rows.landmarks_68, rows.expressions, rows.au_intensity):
        x0, y0 = points.min(axis=0).astype(int)
        x1, y1 = points.max(axis=0).astype(int)
        top = int(np.argmax(probs))
        strongest = np.argsort(-intensity)[:3]
        lines = [f"{EXPRESSIONS[top]} {probs[top]:.2f}",
                 " ".join(f"AU{INTENSITY_AUS[i]} {intensity[i]:.1f}" for i in strongest if intensity[i] >= PRESENT_AT)]
        cv2.rectangle(out, (int(x0), int(y0)), (int(x1), int(y1)), (255, 200, 0), 2)
        for k, text in enumerate(lines):
            cv2.putText(out, text, (int(x0), int(y1) + 18 + 18 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1,
                        cv2.LINE_AA)
    return out


def _classifier(path: str) -> ImageClassifier:
    """One load per model file (and version of it) in a worker, however many files it classifies."""
    file = Path(path)
    return _load_once(path, file.stat().st_mtime_ns if file.is_file() else -1)


@functools.lru_cache(maxsize=2)
def _load_once(path: str, mtime_ns: int) -> ImageClassifier:
    return load_classifier(Path(path))


def classify_file(source: Path, output: Path, options: ClassifyOptions, preview: Path | None = None,
                  progress: ProgressCallback | None = None) -> FileStats:
    """The batch worker: media, a faces file or a landmarks file -> ``output`` (and segments)."""
    model = _classifier(options.model) if options.model else None  # a bad model fails before any work
    with prepared(source, output, options.landmarks, progress) as prep:
        settings = {**asdict(options), "model_used": model.describe() if model else None}
        header = prep.header("classify", settings, (model.path, model.sidecar) if model else ())
        run = _Run(prep, output, options, model)
        stats = stream_rows(prep, output, "classify", header, run.rows, run, want_frames=model is not None,
                            preview=preview, draw=draw_classification)
    stats.summary = run.summary.summary()
    return stats


def classify(path: str | Path, **options: Any) -> Classification:
    """Classify every face of an image, a video, a faces file or a landmarks file.

    Keyword options are :class:`ClassifyOptions` fields (``explain``, ``model``) and landmark
    options. Returns the table; its header holds each track's ``summary``.
    """
    return table_of(classify_file, path, "classify", ClassifyOptions, options, files=("segments",))
