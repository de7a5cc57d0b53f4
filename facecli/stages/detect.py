"""``detect``: faces in every frame, tracked across frames with persistent ids."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import backends, formats, media
from ..backends import Detector, FrameDetections
from ..errors import UsageError
from ..render import draw_faces
from ..results import Faces
from ..tracking import FaceTracker, ShotCutDetector
from .common import FileStats, ProgressCallback, run_to_file


MIN_FACE_PX = 40.0
MAX_MIN_TRACK = 10  # frames held back for confirmation stay few: memory stays bounded
VIDEO_MIN_FACE_SHARE = 0.05


@dataclass(frozen=True)
class DetectOptions:
    """Settings of the detect stage (the CLI's options, by the same names)."""

    backend: str = "mediapipe"
    min_score: float = 0.5  # 0-1: weaker detections are dropped
    min_size: float | None = None  # px: smallest face side looked for; None: see min_size_for
    max_faces: int = 0  # per frame, largest scores first; 0 = no limit
    every: int = 1  # process every Nth frame (the others are decoded only for cut detection)
    min_track: int = 2  # video: drop tracks seen in fewer processed frames (1 keeps every detection)

    def __post_init__(self) -> None:
        if min(self.every, self.min_track) < 1 or self.min_track > MAX_MIN_TRACK or (self.min_size or 1) <= 0 \
                or not 0 <= self.min_score <= 1 or self.max_faces < 0:
            raise UsageError(f"need --every >= 1, 1 <= --min-track <= {MAX_MIN_TRACK}, --min-size > 0, "
                             "0 <= --min-score <= 1, --max-faces >= 0")
        backends.check_name("detect", self.backend)

    def min_size_for(self, info: media.MediaInfo) -> float:
        """The smallest face looked for: as given, else 40 px for images and, for videos, 5% of
        the long side (at least 40 px), so a detection scan costs about the same at any resolution."""
        if self.min_size is not None:
            return self.min_size
        long_side = max(info.width, info.height)
        return MIN_FACE_PX if info.kind == "image" else max(MIN_FACE_PX, VIDEO_MIN_FACE_SHARE * long_side)

    def create_detector(self, info: media.MediaInfo) -> Detector:
        return backends.create("detect", self.backend, min_score=self.min_score, min_size=self.min_size_for(info),
                               max_faces=self.max_faces)


def faces_from_detections(frame: media.Frame, shot: int, ids: np.ndarray, dets: FrameDetections) -> Faces:
    n = len(dets)
    return Faces(frame_index=np.full(n, frame.index), timestamp_s=np.full(n, frame.timestamp_s), face_id=ids,
                 shot=np.full(n, shot), score=dets.scores, box_xywh=dets.boxes_xywh, keypoints_6=dets.keypoints_6)


def iter_detect(path: Path, options: DetectOptions, detector: Detector | None = None,
                info: media.MediaInfo | None = None) -> Iterator[tuple[media.Frame, Faces]]:
    """Per processed frame: the frame and its tracked detections.

    In a video a track must be seen in ``min_track`` processed frames before its rows count:
    frames are held back that many frames, so a one-frame false positive never shows.
    """
    info = info or media.probe(path)
    detector = detector or options.create_detector(info)
    video = info.kind == "video"
    cuts, tracker = ShotCutDetector(flag_blank=video), FaceTracker()
    min_track = options.min_track if video else 1
    held: deque[tuple[media.Frame, Faces]] = deque()
    hits: Counter[int] = Counter()
    processed = 0
    for frame in media.iter_frames(path, info):
        if cuts.update(frame.image):
            tracker.new_shot()
        if frame.index % options.every:
            continue
        dets = FrameDetections.empty() if cuts.blank else detector.detect(frame.image)
        faces = faces_from_detections(frame, cuts.shot, tracker.update(dets.boxes_xywh), dets)
        hits.update(faces.face_id.tolist())
        held.append((frame, faces))
        processed += 1
        if len(held) >= min_track:
            yield _confirmed(*held.popleft(), hits, min_track)
    if processed < min_track:  # a clip shorter than that (a GIF, a one-frame video) keeps all it found
        min_track = 1
    while held:
        yield _confirmed(*held.popleft(), hits, min_track)


def _confirmed(frame: media.Frame, faces: Faces, hits: Counter[int], min_track: int) -> tuple[media.Frame, Faces]:
    keep = np.array([hits[i] >= min_track for i in faces.face_id.tolist()], bool)
    return frame, faces[keep]


def detect(path: str | Path, **options: object) -> Faces:
    """Faces in an image or video, tracked across frames. Options: see :class:`DetectOptions`."""
    opts, path = DetectOptions(**options), Path(path)
    info = media.probe(path)
    detector = opts.create_detector(info)
    header = formats.make_header("faces", opts.backend, _settings(opts, detector), path, info)
    return Faces.concat([rows for _, rows in iter_detect(path, opts, detector, info)], header=header)


def _settings(options: DetectOptions, detector: Detector) -> dict[str, object]:
    """What a header records: the options as given and the detector's resolved settings."""
    return {**asdict(options), "detector": detector.settings()}


def detect_file(source: Path, output: Path, options: DetectOptions, preview: Path | None = None,
                progress: ProgressCallback | None = None) -> FileStats:
    """The batch worker: ``source`` media to a faces file at ``output``."""
    info = media.probe(source)
    detector = options.create_detector(info)
    return run_to_file(
        iter_detect(source, options, detector, info), stage_format="faces", source=source, info=info,
        output=output, backend=options.backend, settings=_settings(options, detector),
        preview=preview, draw=draw_faces, progress=progress, frame_step=options.every,
    )
