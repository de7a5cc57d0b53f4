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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import formats, media
from ..action_units import MAX_INTENSITY, PRESENT_AT, activations, asymmetry
from ..atomic import atomic_output
from ..blendshapes import measure_blendshapes
from ..emotions import EpisodeFinder, Segment, TrackSummary, explain, probabilities, valence_arousal
from ..errors import NoFaceFound
from ..onnx_model import align_crops, load_classifier
from ..face3d import rotation_matrices
from ..facemodel import IBUG68_FROM_MESH
from ..results import AUS, EXPRESSIONS, INTENSITY_AUS, Classification, Landmarks
from .common import FileStats, PreviewSink, ProgressCallback
from .identity import Identity, camera_of, identities, landmarks_for, metric_rows, rows_with_frames, table_of
from .landmarks import LandmarkOptions, resolve_source


@dataclass(frozen=True)
class ClassifyOptions:
    """Settings of the classify stage (the CLI's options, by the same names)."""

    landmarks: LandmarkOptions = field(default_factory=lambda: LandmarkOptions(mirror_average=True))
    explain: bool = False  # one sentence per face and frame (and per episode with segments)
    segments: bool = False  # <stem>.segments.csv: expression episodes
    model: str | None = None  # an ONNX expression classifier with its YAML sidecar


def gaze_angles(gaze_deg: np.ndarray, rotation_rad: np.ndarray) -> np.ndarray:
    """Eye-in-head yaw/pitch (degrees, :func:`facecli.blendshapes.gaze_deg`) and head pose ->
    OpenFace's gaze_angle_x/y (radians): the gaze direction in the camera, 0, 0 into the lens,
    x > 0 towards the image right, y > 0 downwards."""
    yaw, pitch = np.radians(gaze_deg).T
    # head frame: yaw > 0 looks to the subject's right (image left, -x), pitch > 0 up (-y)
    direction = np.stack([-np.sin(yaw) * np.cos(pitch), -np.sin(pitch), -np.cos(yaw) * np.cos(pitch)], axis=1)
    seen = np.einsum("nij,nj->ni", rotation_matrices(rotation_rad), direction)
    return np.stack([np.arctan2(seen[:, 0], -seen[:, 2]), np.arctan2(seen[:, 1], -seen[:, 2])], 1).astype(np.float32)


class _Scorer:
    """Per row: AUs, expressions, valence/arousal, gaze and the explanation."""

    def __init__(self, camera: np.ndarray, known: dict[int, Identity], options: ClassifyOptions):
        self.camera, self.known, self.options = camera, known, options
        self.model = load_classifier(Path(options.model)) if options.model else None

    def rows(self, batch: Landmarks, image: np.ndarray | None) -> Classification:
        faces = metric_rows(batch, self.camera)
        n = len(batch)
        act, asym = np.zeros((n, len(AUS)), np.float32), np.zeros(n, np.float32)
        gaze = np.zeros((n, 2), np.float32)
        for face_id in np.unique(batch.face_id):
            rows = batch.face_id == face_id
            reading = measure_blendshapes(faces[rows], self.known[int(face_id)].neutral)
            act[rows], asym[rows], gaze[rows] = activations(reading), asymmetry(reading), reading.gaze_deg
        probs = self._expressions(act, asym, batch, image)
        intensity = act * MAX_INTENSITY
        words = [explain(i, p, a) if self.options.explain else "" for i, p, a in zip(intensity, probs, asym)]
        return Classification(
            frame_index=batch.frame_index, timestamp_s=batch.timestamp_s, face_id=batch.face_id, shot=batch.shot,
            confidence=batch.confidence, rotation_rad=batch.rotation_rad, translation_mm=batch.translation_mm,
            landmarks_68=batch.landmarks_478[:, IBUG68_FROM_MESH, :2],
            au_intensity=intensity[:, [AUS.index(au) for au in INTENSITY_AUS]],
            au_presence=(intensity >= PRESENT_AT).astype(np.int8), gaze_angle_rad=gaze_angles(gaze, batch.rotation_rad),
            expressions=probs, valence_arousal=valence_arousal(probs), explanation=np.array(words, dtype=np.str_),
        )

    def _expressions(self, act: np.ndarray, asym: np.ndarray, batch: Landmarks,
                     image: np.ndarray | None) -> np.ndarray:
        if self.model is None or not len(batch):
            return probabilities(act, asym)
        return self.model.predict(align_crops(image, batch.landmarks_478, self.model.spec))


def segments_path(output: Path) -> Path:
    stem = output.name.removesuffix(output.suffix).removesuffix(".classify")
    return output.with_name(f"{stem}.segments.csv")


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


def classify_file(source: Path, output: Path, options: ClassifyOptions, preview: Path | None = None,
                  progress: ProgressCallback | None = None) -> FileStats:
    """The batch worker: media, a faces file or a landmarks file -> ``output`` (and segments)."""
    source = Path(source)
    stage = formats.stage_of(source)
    media_path, _ = resolve_source(source, "landmarks" if stage == "landmarks" else "faces")
    with landmarks_for(source, output, options.landmarks, progress if stage != "landmarks" else None) as marks_path:
        marks_header = formats.read_header(marks_path)
        camera = camera_of(marks_header)
        known = identities(marks_path, camera)
        if not known:
            raise NoFaceFound("no face found; check the file, or lower --min-score", source)
        scorer = _Scorer(camera, known, options)
        info = media.probe(media_path)
        settings = {**asdict(options), "model_used": scorer.model.describe() if scorer.model else None}
        header = formats.make_header("classify", marks_header["backend"], settings, media_path, info, source)
        return _write(marks_path, media_path, info, output, header, scorer, preview)


def _write(marks_path: Path, media_path: Path, info: media.MediaInfo, output: Path, header: dict[str, Any],
           scorer: _Scorer, preview: Path | None) -> FileStats:
    stats, summary, episodes = FileStats(), TrackSummary(), EpisodeFinder()
    sink = PreviewSink(preview, info) if preview else None
    writer = formats.TableWriter(output, "classify", header)
    want_frames = bool(preview or scorer.model)
    try:
        for frame, batch in rows_with_frames(marks_path, media_path, want_frames):
            rows = scorer.rows(batch, frame.image if frame is not None else None)
            writer.write(rows)
            summary.push(rows.face_id, rows.expressions)
            for row in range(len(rows)):
                episodes.push(int(rows.face_id[row]), int(rows.frame_index[row]), float(rows.timestamp_s[row]),
                              rows.expressions[row], str(rows.explanation[row]))
            if frame is not None:
                stats.frames += 1
                if sink:
                    sink.add(draw_classification(frame.image, rows))
        if scorer.options.segments:
            write_segments(segments_path(output), episodes.finish())
        if sink:
            sink.close()
            sink = None
        stats.summary = summary.summary()
        writer.close(summary=stats.summary)
    except BaseException as exc:
        writer.abort(exc)
        if sink:
            sink.close(exc)
        if scorer.options.segments:
            segments_path(output).unlink(missing_ok=True)
        raise
    stats.rows, stats.faces = writer.rows, len(stats.summary)
    stats.frames = stats.frames or int(info.frame_count or 1)
    return stats


def classify(path: str | Path, **options: Any) -> Classification:
    """Classify every face of an image, a video, a faces file or a landmarks file.

    Keyword options are :class:`ClassifyOptions` fields (``explain``, ``model``) and landmark
    options. Returns the table; its header holds each track's ``summary``.
    """
    return table_of(classify_file, path, "classify", ClassifyOptions, {**options, "segments": False})
