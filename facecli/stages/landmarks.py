"""``landmarks``: the 478-point mesh per tracked face, the 68/5-point layouts and head pose.

Video strategy (what makes it run at the mesh's own speed): the detection scan runs only on
keyframes (the first frame of each shot, every ``detect_every`` frames, and more often while
a face is lost or none is tracked); in between, each face's mesh places its own next crop, as
MediaPipe's tracking mode does. Input may be media or a faces file from ``detect``, whose
detections then replace the scan on the same keyframes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import backends, formats, media
from ..backends import Detector, FrameDetections, LandmarkSession
from ..errors import InputError, UsageError
from ..facemodel import IBUG68_FROM_MESH, MIRROR_INDEX, RIGID_INDICES, mean_face
from ..filters import OneEuroFilter
from ..geometry import (box_centres, box_iou, camera_matrix, euler_xyz, points_box, points_in_boxes, solve_pose,
                        square_box, umeyama)
from ..render import draw_landmarks
from ..results import Faces, Landmarks
from ..tracking import FaceTracker, ShotCutDetector
from .common import FileStats, ProgressCallback, run_to_file
from .detect import DetectOptions

# Crop around a face for the mesh, as a multiple of the face's size: room for motion between frames.
CROP_FROM_DETECTION = 2.0
CROP_FROM_MESH = 1.7
RESCAN_WHILE_LOST = 6  # frames between scans while a tracked face is missing
RESCAN_WHILE_EMPTY = (6, 12, 24)  # frames between scans while no face is tracked, backing off
# Rigid-point disagreement with the mean face (mm) at which confidence reaches 0.
CONFIDENCE_ZERO_MM = 12.0
# Mirror averaging: crop shifts, as fractions of the crop's side, symmetric under mirroring.
MIRROR_CROP_SHIFTS = ((0.0, 0.0), (0.02, 0.0), (-0.02, 0.0), (0.0, 0.02), (0.0, -0.02))


@dataclass(frozen=True)
class LandmarkOptions:
    """Settings of the landmarks stage (the CLI's options, by the same names)."""

    backend: str = "mediapipe"
    detect: DetectOptions = field(default_factory=DetectOptions)
    detect_every: int = 150  # frames between detection scans while every face is tracked
    smooth: bool = False  # One Euro filter on each point (off by default)
    smooth_min_cutoff: float = 1.0  # Hz: lower is smoother at rest
    smooth_beta: float = 0.05  # 1/px (Hz per px/s): higher follows fast motion with less lag
    focal_px: float | None = None  # camera focal length; default max(width, height)
    mirror_average: bool = False  # still images: average the mesh with its mirror image's (see _MirrorAveraged)

    def __post_init__(self) -> None:
        if self.detect_every < 1 or (self.focal_px is not None and self.focal_px <= 0) \
                or self.smooth_min_cutoff <= 0 or self.smooth_beta < 0:
            raise UsageError("need --detect-every >= 1, --focal > 0, --smooth-min-cutoff > 0, --smooth-beta >= 0")
        backends.check_name("landmarks", self.backend)


@dataclass
class _Track:
    session: LandmarkSession
    points: np.ndarray  # (478, 3) px, last fit
    smoother: OneEuroFilter | None = None


class _MirrorAveraged(LandmarkSession):
    """A still image's mesh averaged over its mirror image and a few shifted crops.

    MediaPipe's mesh is not mirror-symmetric, and moves with the crop by a fraction of a pixel:
    a flipped portrait gave yaw and mouth measures that differ from the original's mirrored
    values by up to a degree and a couple of mm. Averaging the image and its mirror image, each
    over crops shifted symmetrically about the first fit's own crop, cancels most of that, at
    ten fits a face, which only still images can afford.
    """

    def __init__(self, session: LandmarkSession):
        self.session = session

    def fit(self, image_rgb: np.ndarray, roi_xywh: np.ndarray) -> np.ndarray | None:
        first = self.session.fit(image_rgb, roi_xywh)
        if first is None:
            return None
        centre_roi = square_box(points_box(first[:, :2]), CROP_FROM_MESH)
        fits = [self._mirrored_pair(image_rgb, centre_roi + np.array([dx, dy, 0, 0]) * centre_roi[2])
                for dx, dy in MIRROR_CROP_SHIFTS]
        fits = [f for f in fits if f is not None]
        return np.mean(fits, axis=0) if fits else first

    def _mirrored_pair(self, image_rgb: np.ndarray, roi_xywh: np.ndarray) -> np.ndarray | None:
        points = self.session.fit(image_rgb, roi_xywh)
        width = image_rgb.shape[1]
        mirrored_roi = np.array([width - roi_xywh[0] - roi_xywh[2], *roi_xywh[1:]], np.float64)
        flipped = self.session.fit(np.ascontiguousarray(image_rgb[:, ::-1]), mirrored_roi)
        if points is None or flipped is None:
            return None
        flipped = flipped[MIRROR_INDEX]
        flipped[:, 0] = width - 1 - flipped[:, 0]  # pixel centres: x and width - 1 - x swap
        return (points + flipped) / 2

    def reset(self) -> None:
        self.session.reset()

    def close(self) -> None:
        self.session.close()


class _SessionPool:
    """Reuses mesh sessions: starting a MediaPipe graph costs far more than a frame."""

    def __init__(self, model: Any, video: bool, mirror_average: bool = False):
        self.model, self.video, self._free = model, video, []
        self.mirror_average = mirror_average and not video

    def get(self) -> LandmarkSession:
        if self._free:  # a reused session starts clean: results must not depend on which track used it
            session = self._free.pop()
            session.reset()
            return session
        session = self.model.open_session(self.video)
        return _MirrorAveraged(session) if self.mirror_average else session

    def put(self, session: LandmarkSession) -> None:
        self._free.append(session)

    def close(self) -> None:
        for session in self._free:
            session.close()


class _FileDetections:
    """Detections from a faces file, read in step with the frames (bounded memory)."""

    def __init__(self, path: Path, every: int):
        self.every = every
        self._batches = formats.iter_batches(path)
        self._buffer: Faces = Faces.empty()

    def at(self, frame: media.Frame) -> FrameDetections | None:
        """The detections of this frame; None if the detect stage skipped it (``--every``)."""
        frame_index = frame.index
        if frame_index % self.every:
            return None
        while not len(self._buffer) or self._buffer.frame_index[-1] <= frame_index:
            batch = next(self._batches, None)
            if batch is None:
                break
            self._buffer = Faces.concat([self._buffer, batch])
        self._buffer = self._buffer[self._buffer.frame_index >= frame_index]
        rows = self._buffer[self._buffer.frame_index == frame_index]
        return FrameDetections(rows.box_xywh, rows.score, rows.keypoints_6)


class _LiveDetections:
    def __init__(self, detector: Detector):
        self.detector = detector

    def at(self, frame: media.Frame) -> FrameDetections:
        return self.detector.detect(frame.image)


class FaceMeshTracker:
    """Per-frame landmarks for every face: mesh tracking between detection keyframes."""

    def __init__(self, model: Any, detections: Any, options: LandmarkOptions, video: bool):
        self.model, self.detections, self.options, self.video = model, detections, options, video
        self.pool = _SessionPool(model, video, options.mirror_average)
        self.cuts, self.tracker = ShotCutDetector(flag_blank=video), FaceTracker()
        self.tracks: dict[int, _Track] = {}
        self.last_scan = -(10**9)
        self.empty_scans = 0

    def _end_all(self) -> None:
        for track in self.tracks.values():
            self.pool.put(track.session)
        self.tracks = {}

    def _due_scan(self, frame_index: int, new_shot: bool) -> bool:
        if self.tracker.lost_recently:
            interval = RESCAN_WHILE_LOST
        elif not self.tracks:  # faceless stretches back off: scans are the costliest step
            interval = RESCAN_WHILE_EMPTY[min(self.empty_scans, len(RESCAN_WHILE_EMPTY) - 1)]
        else:
            interval = self.options.detect_every
        return new_shot or frame_index - self.last_scan >= interval

    def _follow(self, frame: media.Frame) -> list[tuple[_Track, np.ndarray]]:
        fitted = []
        for track in self.tracks.values():
            points = track.session.fit_frame(frame, square_box(points_box(track.points[:, :2]), CROP_FROM_MESH))
            if points is None:
                self.pool.put(track.session)
            else:
                fitted.append((track, points))
        return fitted

    def _start(self, frame: media.Frame, dets: FrameDetections, fitted: list) -> None:
        """Start a track for each detection whose centre no tracked face covers."""
        for box, centre in zip(dets.boxes_xywh, box_centres(dets.boxes_xywh)):
            if points_in_boxes(centre, [points_box(p[:, :2]) for _, p in fitted]).any():
                continue
            session = self.pool.get()
            points = session.fit_frame(frame, square_box(box, CROP_FROM_DETECTION))
            if points is None:
                self.pool.put(session)
            else:
                fitted.append((_Track(session, points), points))

    def step(self, frame: media.Frame) -> tuple[int, list[tuple[int, np.ndarray]]]:
        """(shot, [(face_id, points_478)]) for one frame."""
        new_shot = self.cuts.update_frame(frame)
        if new_shot:
            self._end_all()
            self.tracker.new_shot()
        fitted = self._follow(frame) if self.video else []
        if self._due_scan(frame.index, new_shot) or not self.video:
            # A blank frame is searched for free: the same in the live and the file path.
            dets = FrameDetections.empty() if self.cuts.blank else self.detections.at(frame)
            if dets is not None:
                self.last_scan = frame.index
                self._start(frame, dets, fitted)
                self.empty_scans = 0 if fitted or new_shot else self.empty_scans + 1
        fitted = _drop_duplicates(fitted, self.pool)
        limit = self.options.detect.max_faces or len(fitted)
        for track, _ in fitted[limit:]:
            self.pool.put(track.session)
        fitted = fitted[:limit]
        ids = self.tracker.update([points_box(p[:, :2]) for _, p in fitted])
        self.tracks = {}
        out = []
        for face_id, (track, points) in zip(ids.tolist(), fitted):
            track.points = points
            self.tracks[face_id] = track
            out.append((face_id, self._smooth(track, points, frame.timestamp_s)))
        if not self.video:
            self._end_all()
        return self.cuts.shot, out

    def _smooth(self, track: _Track, points: np.ndarray, t_s: float) -> np.ndarray:
        if not self.options.smooth:
            return points
        if track.smoother is None:
            track.smoother = OneEuroFilter(self.options.smooth_min_cutoff, self.options.smooth_beta)
        return track.smoother(points, t_s)

    def close(self) -> None:
        self._end_all()
        self.pool.close()


def _drop_duplicates(fitted: list, pool: _SessionPool) -> list:
    """Two tracks that converged on one face: keep the older (listed first)."""
    kept: list = []
    for track, points in fitted:
        box = points_box(points[:, :2])
        if kept and box_iou(box, np.stack([points_box(p[:, :2]) for _, p in kept])).max() > 0.5:
            pool.put(track.session)
            continue
        kept.append((track, points))
    return kept


def pose_and_metrics(points: np.ndarray, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Head pose against the mean face, the 68 points in camera mm, and a 0-1 confidence.

    Pose: PnP of the mean face's rigid points onto their 2D positions. The observed 3D mesh
    (px, relative depth) is brought to mm by a similarity fit on the same points, keeping
    the person's expression, then placed in the camera by that pose.
    """
    model, rigid = mean_face().vertices_mm, points[RIGID_INDICES]
    rotation, translation = solve_pose(model[RIGID_INDICES], rigid[:, :2], camera)
    scale, rot, shift = umeyama(rigid, model[RIGID_INDICES])
    residual_mm = float(np.sqrt(((scale * rigid @ rot.T + shift - model[RIGID_INDICES]) ** 2).sum(axis=1).mean()))
    confidence = float(np.clip(1.0 - residual_mm / CONFIDENCE_ZERO_MM, 0.0, 1.0))
    landmarks_68_mm = (scale * points[IBUG68_FROM_MESH] @ rot.T + shift) @ rotation.T + translation
    return euler_xyz(rotation), translation, landmarks_68_mm, confidence


_NO_POSE = (np.full(3, np.nan), np.full(3, np.nan), np.full((68, 3), np.nan), np.nan)


def landmarks_rows(frame: media.Frame, shot: int, faces: list[tuple[int, np.ndarray]],
                   camera: np.ndarray | None) -> Landmarks:
    """One frame's rows; without a ``camera``, no head pose: pose, 68 points in mm and
    confidence are NaN (for callers that use the mesh alone)."""
    n = len(faces)
    rows = Landmarks.empty()
    if not n:
        return rows
    metrics = [pose_and_metrics(points, camera) if camera is not None else _NO_POSE for _, points in faces]
    return Landmarks(
        frame_index=np.full(n, frame.index), timestamp_s=np.full(n, frame.timestamp_s),
        face_id=[face_id for face_id, _ in faces], shot=np.full(n, shot),
        confidence=[m[3] for m in metrics], box_xywh=[points_box(p[:, :2]) for _, p in faces],
        landmarks_478=[p for _, p in faces], rotation_rad=[m[0] for m in metrics],
        translation_mm=[m[1] for m in metrics], landmarks_68_mm=[m[2] for m in metrics],
    )


def resolve_source(path: Path, stage: str = "faces") -> tuple[Path, Path | None]:
    """(media path, stage file or None): a ``stage`` file (faces, or for later stages
    landmarks) points at its media through its header.

    The media must be the one the stage saw (same quick hash). If it moved together with the
    stage file, it is found beside it under its old name.
    """
    if formats.stage_of(path) != stage:
        return path, None
    command = {"faces": "detect"}.get(stage, stage)
    recorded = formats.read_header(path)["source"]
    for candidate in (Path(recorded["path"]), path.parent / Path(recorded["path"]).name):
        if candidate.is_file():
            if formats.quick_hash(candidate) != recorded.get("sha256_quick"):
                raise InputError(f"its media {candidate} changed since {command} ran; re-run {command}", path)
            return candidate, path
    raise InputError(f"its source media {recorded['path']} is gone; move it back or re-run {command}", path)


def iter_landmarks(path: Path, options: LandmarkOptions, model: Any = None, detector: Detector | None = None,
                   head_pose: bool = True) -> Iterator[tuple[media.Frame, Landmarks]]:
    """Per frame: the frame and its landmark rows. ``path``: media or a faces file.
    ``head_pose`` False leaves pose out (NaN), for callers that need the mesh alone."""
    media_path, faces_file = resolve_source(Path(path))
    return _iter_resolved(media_path, faces_file, media.probe(media_path), options, model, detector, head_pose)


def _iter_resolved(media_path: Path, faces_file: Path | None, info: media.MediaInfo, options: LandmarkOptions,
                   model: Any, detector: Detector | None,
                   head_pose: bool = True) -> Iterator[tuple[media.Frame, Landmarks]]:
    model = model or backends.create("landmarks", options.backend)
    if faces_file:
        every = int(formats.read_header(faces_file)["settings"].get("every", 1))
        detections: Any = _FileDetections(faces_file, every)
    else:
        detections = _LiveDetections(detector or options.detect.create_detector(info))
    tracker = FaceMeshTracker(model, detections, options, video=info.kind == "video")
    camera = camera_matrix(info.width, info.height, options.focal_px) if head_pose else None
    try:
        for frame in media.iter_frames(media_path, info):
            shot, faces = tracker.step(frame)
            yield frame, landmarks_rows(frame, shot, faces, camera)
    finally:
        tracker.close()


def landmarks(path: str | Path, **options: Any) -> Landmarks:
    """Landmarks and head pose for every face in an image, a video or a faces file."""
    opts = options_from(options)
    media_path, faces_file, info, model, detector = _prepare(Path(path), opts)
    header = formats.make_header("landmarks", opts.backend, _settings(opts, model, detector, faces_file),
                                 media_path, info, Path(path))
    parts = [rows for _, rows in _iter_resolved(media_path, faces_file, info, opts, model, detector)]
    return Landmarks.concat(parts, header=header)


def _prepare(source: Path, options: LandmarkOptions) -> tuple[Path, Path | None, media.MediaInfo, Any, Detector | None]:
    """Media path, faces file, media info, landmark model and (without a faces file) detector."""
    media_path, faces_file = resolve_source(source)
    info = media.probe(media_path)
    model = backends.create("landmarks", options.backend)
    return media_path, faces_file, info, model, None if faces_file else options.detect.create_detector(info)


def _settings(options: LandmarkOptions, model: Any, detector: Detector | None,
              faces_file: Path | None) -> dict[str, Any]:
    """What a header records: the options as given and what the backends resolved them to."""
    used = detector.settings() if detector else {"faces_file": str(faces_file.resolve())}
    return {**asdict(options), "model": model.settings(), "detector": used}


def options_from(options: dict[str, Any]) -> LandmarkOptions:
    """LandmarkOptions from flat keyword options (detection ones go to ``detect``)."""
    detect_keys = set(DetectOptions.__dataclass_fields__) - {"backend", "every", "min_track"}
    detect_opts = {k: options.pop(k) for k in list(options) if k in detect_keys}
    if "detector" in options:
        detect_opts["backend"] = options.pop("detector")
    return LandmarkOptions(detect=DetectOptions(**detect_opts), **options)


def landmarks_file(source: Path, output: Path, options: LandmarkOptions, preview: Path | None = None,
                   progress: ProgressCallback | None = None) -> FileStats:
    """The batch worker: media or a faces file to a landmarks file at ``output``."""
    media_path, faces_file, info, model, detector = _prepare(source, options)
    return run_to_file(
        _iter_resolved(media_path, faces_file, info, options, model, detector), stage_format="landmarks",
        source=media_path, info=info, output=output, backend=options.backend,
        settings=_settings(options, model, detector, faces_file),
        preview=preview, draw=draw_landmarks, progress=progress, input_path=source,
    )
