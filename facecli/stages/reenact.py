"""``reenact``: a source portrait (or video) driven by the face in a driving video.

Two passes over the driving face's landmarks (computed once into a temporary landmarks file,
or read from one given as the driving input), so memory does not grow with the video:

1. small per-frame features of every track: pick the driving track (the longest, or
   ``driving_face_id``), its most neutral frame as the reference (or ``ref_frame``) and its
   open-eye level;
2. frame by frame: the driver's motion retargeted onto the source (:mod:`facecli.retarget`),
   rendered by the shared portrait renderer (:mod:`facecli.portrait`), the face optionally
   refined by a diffusion model (:mod:`facecli.diffusion`, ``diffusion``), and encoded with
   the driving video's audio. Frames where the track is missing hold the last motion: a track
   that ends (a cut, a lost face) is never continued with another face.

A source video keeps its own head pose frame by frame; expression, mouth and eyes follow
the driver.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from .. import exchange, formats, media
from ..diffusion import DiffusionOptions, DiffusionRefiner
from ..errors import InputError, NoFaceFound, UsageError
from ..face_rig import FaceRig
from ..portrait import Portrait, PortraitRenderer, apply_transform, check_side, crop_transform, even, load_portrait
from ..results import FACE_CONTROLS, Motion
from ..retarget import PARTS, DriverFrame, Retargeter, estimate_controls, eye_openness_mm, lip_gaps_mm, mouth_width_mm
from .animate import ENCODER_PRESET, live_link_path, motion_path
from .common import FileStats, ProgressCallback, all_or_nothing
from .tracks import landmarks_source, track_rows

LENGTHS = ("driving", "source", "shortest")


@dataclass(frozen=True)
class ReenactOptions:
    driving: str  # a video, or a landmarks file of one
    parts: tuple[str, ...] = PARTS
    expression_scale: float = 1.0
    pose_scale: float = 1.0
    absolute: bool = False
    ref_frame: int | None = None  # 0-based driving frame; default: the track's most neutral
    driving_face_id: int | None = None
    source_face_id: int | None = None
    length: str | None = None  # driving | source | shortest (a source video of another length)
    crop: bool = False
    size: int = 512
    livelink: bool = False
    diffusion: DiffusionOptions | None = None  # the diffusers renderer; None: the geometric one alone

    def __post_init__(self) -> None:
        unknown = set(self.parts) - set(PARTS)
        if unknown or not self.parts:
            raise UsageError(f"--parts takes a comma-separated subset of {','.join(PARTS)}; got {','.join(self.parts)}")
        if self.length is not None and self.length not in LENGTHS:
            raise UsageError(f"--length must be one of {', '.join(LENGTHS)}")
        check_side(self.size)
        if self.expression_scale < 0 or self.pose_scale < 0:
            raise UsageError("--expression-scale and --pose-scale must not be negative")


# --------------------------------------------------------------------------- the driving track


@dataclass
class DrivingTrack:
    landmarks_file: Path
    media: Path
    face_id: int
    frames: int  # decoded frames of the driving video
    fps: float
    reference: DriverFrame
    reference_frame: int
    open_eyes_mm: np.ndarray  # (2,) the driver's open-eye lid gaps (90th percentile)


def _features(path: Path) -> dict[str, np.ndarray]:
    """Pass 1: per row of every track, what choosing the track and its reference needs."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("face_id", "frame", "mouth", "eyes", "pose")}
    for batch in formats.iter_batches(path):
        for row in range(len(batch)):
            face = FaceRig(batch.landmarks_478[row]).shape_mm
            parts["mouth"].append(np.array(lip_gaps_mm(face).mean() / mouth_width_mm(face)))
            parts["eyes"].append(eye_openness_mm(face))
        parts["face_id"].append(batch.face_id)
        parts["frame"].append(batch.frame_index)
        parts["pose"].append(batch.head_pose_deg)
    if not parts["face_id"] or not sum(len(f) for f in parts["face_id"]):
        return {}
    return {"face_id": np.concatenate(parts["face_id"]), "frame": np.concatenate(parts["frame"]),
            "mouth": np.array(parts["mouth"]), "eyes": np.array(parts["eyes"]),
            "pose": np.concatenate(parts["pose"])}


def _neutral_row(mouth: np.ndarray, eyes: np.ndarray, pose: np.ndarray) -> int:
    """The most neutral frame: mouth closed, eyes as open as usual, head near its usual pose."""
    eye_ratio = eyes.mean(axis=1) / max(float(np.median(eyes.mean(axis=1))), 1e-6)
    score = mouth / 0.1 + np.abs(eye_ratio - 1.0) / 0.2 + np.abs(pose - np.median(pose, axis=0)).sum(axis=1) / 10.0
    return int(np.argmin(score))


def driving_track(path: Path, options: ReenactOptions, folder: Path) -> DrivingTrack:
    marks_path = landmarks_source(path, folder, "driving video")
    header = formats.read_header(marks_path)
    features = _features(marks_path)
    if not features:
        raise NoFaceFound("no face found in the driving video; use one with a visible face", path)
    ids, counts = np.unique(features["face_id"], return_counts=True)
    face_id = options.driving_face_id if options.driving_face_id is not None else int(ids[np.argmax(counts)])
    mine = features["face_id"] == face_id
    if not mine.any():
        raise UsageError(f"no driving face with id {face_id}; the driving video has ids "
                         f"{', '.join(map(str, ids.tolist()))}", path)
    frames = features["frame"][mine]
    if options.ref_frame is None:
        ref = int(frames[_neutral_row(features["mouth"][mine], features["eyes"][mine], features["pose"][mine])])
    elif options.ref_frame in frames:
        ref = options.ref_frame
    else:
        raise UsageError(f"driving face {face_id} is not in frame {options.ref_frame}; it is in frames "
                         f"{frames.min()}-{frames.max()}", path)
    reference = next(DriverFrame.from_landmarks(points, rot) for f, points, rot in track_rows(marks_path, face_id) if f == ref)
    source = header["source"]
    return DrivingTrack(marks_path, Path(source["path"]), face_id, int(header.get("frames_processed", 0)),
                        float(source.get("fps") or 25.0), reference, ref,
                        np.percentile(features["eyes"][mine], 90, axis=0))


# --------------------------------------------------------------------------- the source


class _SourceFrames:
    """The source's frames and meshes: one still portrait, or a video and its face track."""

    def __init__(self, path: Path, options: ReenactOptions, folder: Path):
        self.options = options
        self.path = path
        if media.is_image_path(path):
            self.still: Portrait | None = load_portrait(path, options.crop, options.size, options.source_face_id)
            self.frames = None
            return
        self.still = None
        self.marks_path = landmarks_source(path, folder, "source video")
        features = _features(self.marks_path)
        if not features:
            raise NoFaceFound("no face found in the source video; use one with a visible face", path)
        self.face_id = self._pick(features, path)
        header = formats.read_header(self.marks_path)
        self.frames = int(header.get("frames_processed", 0))
        self.fps = float(header["source"].get("fps") or 25.0)
        self.affine = None

    def _pick(self, features: dict[str, np.ndarray], path: Path) -> int:
        ids = np.unique(features["face_id"])
        if self.options.source_face_id is None:
            return int(ids[np.argmax([np.sum(features["face_id"] == i) for i in ids])])
        if self.options.source_face_id not in ids:
            raise UsageError(f"no source face with id {self.options.source_face_id}; the source has ids "
                             f"{', '.join(map(str, ids.tolist()))}", path)
        return self.options.source_face_id

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(image, landmarks or None) per source frame; a still portrait forever."""
        if self.still is not None:
            while True:
                yield self.still.image, self.still.landmarks_478
        rows = track_rows(self.marks_path, self.face_id)
        pending = next(rows, None)
        for frame in media.iter_frames(self.path):
            while pending is not None and pending[0] < frame.index:
                pending = next(rows, None)
            points = pending[1] if pending is not None and pending[0] == frame.index else None  # (f, mesh, pose)
            yield self._framed(frame.image, points)

    def _framed(self, image: np.ndarray, points: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.options.crop:
            return even(image), points
        if self.affine is None and points is not None:  # one crop for the whole video, at the first face
            box = np.array([*points[:, :2].min(axis=0), *np.ptp(points[:, :2], axis=0)])
            self.affine = crop_transform(box, self.options.size)
        affine = self.affine if self.affine is not None else crop_transform(
            np.array([0, 0, image.shape[1], image.shape[0]]), self.options.size)
        cropped, moved = apply_transform(image, points if points is not None else np.zeros((1, 3)), affine,
                                         self.options.size)
        return cropped, moved if points is not None else None


def _output_frames(track: DrivingTrack, source: _SourceFrames, options: ReenactOptions, path: Path) -> int:
    if source.frames is None:
        return track.frames
    if abs(source.fps - track.fps) > 0.005 * track.fps:  # frames pair up one to one: rates must agree
        raise InputError(f"the source runs at {source.fps:g} frames/s and the driving video at {track.fps:g}; "
                         "convert one to the other's rate", path)
    if "pose" in options.parts and len(options.parts) == 1:
        raise UsageError("a source video keeps its own head pose: --parts pose alone transfers nothing", path)
    if source.frames == track.frames:
        return track.frames
    if options.length is None:
        raise InputError(f"the source has {source.frames} frames and the driving video {track.frames}; "
                         "pass --length driving, source or shortest", path)
    return {"driving": track.frames, "source": source.frames, "shortest": min(track.frames, source.frames)}[options.length]


# --------------------------------------------------------------------------- the stage


def _motion(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], fps: float, face_id: int) -> Motion:
    n = len(rows)
    return Motion(frame_index=np.arange(n), timestamp_s=np.arange(n) / fps, face_id=np.full(n, face_id),
                  shot=np.zeros(n), face_controls=np.array([r[0] for r in rows]).reshape(n, len(FACE_CONTROLS)),
                  head_pose_deg=np.array([r[1] for r in rows]).reshape(n, 3),
                  gaze_deg=np.array([r[2] for r in rows]).reshape(n, 2), phone=np.full(n, ""))


def reenact_file(source: Path, output: Path, options: ReenactOptions, preview: Path | None = None,
                 progress: ProgressCallback | None = None) -> FileStats:
    """The batch worker: ``source`` driven by ``options.driving`` -> video ``output`` and its motion file."""
    driving = Path(options.driving)
    with all_or_nothing(output, live_link_path(output), motion_path(output)), \
            tempfile.TemporaryDirectory(prefix="facecli-reenact-") as tmp:
        track = driving_track(driving, options, Path(tmp))
        frames = _SourceFrames(Path(source), options, Path(tmp))
        n = _output_frames(track, frames, options, Path(source))
        motion = _motion(_render(track, frames, n, options, output, progress), track.fps, track.face_id)
        if options.livelink:
            exchange.write_live_link_csv(motion, live_link_path(output), track.fps)
        header = formats.make_header("motion", "facecli", asdict(options), Path(source), media.probe(Path(source)),
                                     extra_inputs=(driving,))
        header["driving"] = {"path": str(driving.resolve()), "face_id": track.face_id,
                             "reference_frame": track.reference_frame}
        with formats.TableWriter(motion_path(output), "motion", header) as writer:
            writer.write(motion)
            writer.close(frames=n, fps=track.fps)
    return FileStats(frames=n, rows=n, faces=1)


def _render(track: DrivingTrack, frames: _SourceFrames, n: int, options: ReenactOptions, output: Path,
            progress: ProgressCallback | None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Render ``n`` frames; returns each frame's (controls, head pose, gaze) for the motion file."""
    driver = track_rows(track.landmarks_file, track.face_id)
    pending = next(driver, None)
    last: DriverFrame = track.reference
    # a source video keeps its own head pose
    parts = options.parts if frames.still is not None else tuple(p for p in options.parts if p != "pose")
    renderer: PortraitRenderer | None = None
    retarget: Retargeter | None = None
    refiner: DiffusionRefiner | None = None
    rows, held, writer = [], None, None
    source_iter = iter(frames)
    fps, times_s = _driving_times(track, n)
    try:
        for i in range(n):
            while pending is not None and pending[0] < i:
                pending = next(driver, None)
            if pending is not None and pending[0] == i:
                last = DriverFrame.from_landmarks(pending[1], pending[2])  # else hold the last motion
            held = next(source_iter, held)  # a source video that ends first holds its last frame
            if held is None:
                raise InputError("the source video has no frames", frames.path)
            image, points = held
            if writer is None:
                h, w = image.shape[:2]
                writer = media.VideoWriter(output, w, h, fps, audio_from=track.media, preset=ENCODER_PRESET,
                                           frames_expected=media.cfr_frame(times_s.max(), times_s[0], fps) + 1)
            if points is None:  # no source face in this frame: it goes out as it is
                writer.write(image, times_s[i])
                rows.append((np.zeros(len(FACE_CONTROLS)), np.zeros(3), np.zeros(2)))
                continue
            if frames.still is None or renderer is None:
                renderer = PortraitRenderer(Portrait(image, points, 0))
                retarget = Retargeter(renderer.rig, track.reference, track.open_eyes_mm, parts,
                                      options.expression_scale, options.pose_scale, options.absolute)
            moved = retarget.transfer(last)
            frame = renderer.render_face(moved.face_mm, moved.head_pose_deg, moved.lid_closure)
            if options.diffusion and refiner is None:  # identity: the first source face
                refiner = DiffusionRefiner(image, points, options.diffusion)
            writer.write(refiner.refine(frame, renderer.rig.to_image(moved.face_mm, moved.head_pose_deg))
                         if refiner else frame, times_s[i])
            rows.append(estimate_controls(moved, renderer.rig))
            if progress:
                progress(1)
    except BaseException as exc:
        if writer is not None:
            writer.__exit__(type(exc), exc, None)
        raise
    if writer is not None:
        writer.__exit__(None, None, None)
    return rows


def _driving_times(track: DrivingTrack, n: int) -> tuple[float, np.ndarray]:
    """The output's frame rate and the times (s) of the driving video's first ``n`` frames, which
    the output's frames are shown at (its audio is the driving video's): a variable frame rate
    stays in sync. Frames past the driving video's end follow one output frame apart."""
    fps = media.output_fps(media.probe(track.media)) or track.fps
    with closing(media.frame_times(track.media)) as times:
        times_s = np.fromiter(islice(times, n), np.float64)
    last_s = times_s[-1] if len(times_s) else -1.0 / fps
    return fps, np.concatenate([times_s, last_s + np.arange(1, n - len(times_s) + 1) / fps])


def reenact(source: str | Path, driving: str | Path, output: str | Path, **options: Any) -> Motion:
    """Make ``output`` (an MP4) of ``source`` (an image or a video) driven by ``driving`` (a video or
    its landmarks file); returns the transferred motion. Options: :class:`ReenactOptions`' fields
    (``diffusion``: a :class:`facecli.diffusion.DiffusionOptions` for the diffusers renderer)."""
    output = Path(output)
    reenact_file(Path(source), output, ReenactOptions(driving=str(driving), **options))
    return formats.read_table(motion_path(output))
