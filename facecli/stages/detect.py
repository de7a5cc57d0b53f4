"""``detect``: faces in every frame, tracked across frames with persistent ids."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import backends, formats, media
from ..backends import Detector, FrameDetections
from ..errors import UsageError
from ..geometry import box_centres, nms, points_in_boxes
from ..render import draw_faces
from ..results import EMBEDDING_DIM, Faces
from ..tracking import FaceTracker, ShotCutDetector
from .common import FileStats, ProgressCallback, run_to_file


MIN_FACE_PX = 40.0
SCAN_EVERY = 10  # video frames between full detection scans; faces found are followed in between
# ArcFace cosine similarity from which two tracks are taken for one person. Pairs of the same
# person typically score well above this and different people well below; a wrong merge is
# worse than a missed one, so it sits high. Not measured on this project's data: no weights here.
MERGE_THRESHOLD = 0.5
MAX_MIN_TRACK = 10  # frames held back for confirmation stay few: memory stays bounded
VIDEO_MIN_FACE_SHARE = 0.05
EMBED_BACKEND = "insightface"  # the registry's one identity embedder: ArcFace from the buffalo_l pack


@dataclass(frozen=True)
class DetectOptions:
    """Settings of the detect stage (the CLI's options, by the same names)."""

    backend: str = "mediapipe"
    min_score: float = 0.5  # 0-1: weaker detections are dropped
    min_size: float | None = None  # px: smallest face side looked for; None: see min_size_for
    max_faces: int = 0  # per frame, largest scores first; 0 = no limit
    every: int = 1  # process every Nth frame (the others are decoded only for cut detection)
    scan_every: int = SCAN_EVERY  # processed video frames between full scans (1: scan every frame)
    min_track: int = 2  # video: drop tracks seen in fewer processed frames (1 keeps every detection)
    embed: bool = False  # a 512-d ArcFace identity vector per track (insightface's w600k_r50)
    merge_tracks: bool = False  # a track takes the id of an earlier shot's track of the same person (embeds)
    merge_threshold: float = MERGE_THRESHOLD  # cosine similarity from which two tracks are one person

    def __post_init__(self) -> None:
        if min(self.every, self.min_track, self.scan_every) < 1 or self.min_track > MAX_MIN_TRACK \
                or (self.min_size or 1) <= 0 or not 0 <= self.min_score <= 1 or self.max_faces < 0 \
                or not 0 < self.merge_threshold <= 1:
            raise UsageError(f"need --every >= 1, --scan-every >= 1, 1 <= --min-track <= {MAX_MIN_TRACK}, "
                             "--min-size > 0, 0 <= --min-score <= 1, --max-faces >= 0, 0 < --merge-threshold <= 1")
        backends.check_name("detect", self.backend)

    @property
    def embeds(self) -> bool:
        return self.embed or self.merge_tracks

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

    def create_identities(self) -> TrackIdentities:
        return TrackIdentities(backends.create("embed", EMBED_BACKEND),
                               self.merge_threshold if self.merge_tracks else None)


class TrackIdentities:
    """One ArcFace vector per track, and with ``merge`` the merging of tracks across shots.

    A track's vector is the mean of its detections' unit vectors over the frames that confirm
    it (the held-back ``--min-track`` frames), renormalised: it is known when the track's first
    row is written, so rows stream as without it. With ``merge``, a new track takes the id of
    the most similar identity from earlier shots when the cosine similarity reaches the
    threshold and no other track of its shot holds that id already; else it keeps its own.
    """

    def __init__(self, embedder: Any, merge_threshold: float | None):
        self.embedder, self.merge_threshold = embedder, merge_threshold
        self.vectors: dict[int, np.ndarray] = {}  # track id -> unit vector
        self.ids: dict[int, int] = {}  # track id -> written id
        self.identities: dict[int, np.ndarray] = {}  # written id -> sum of its tracks' vectors
        self.shot, self.taken = -1, set()  # written ids in use in the current shot

    def label(self, rows: Faces, window: list[tuple[media.Frame, Faces]]) -> Faces:
        """``rows`` (the first of ``window``'s frames) with embeddings and merged ids."""
        for track, shot in sorted(set(zip(rows.face_id.tolist(), rows.shot.tolist()))):
            if track not in self.vectors:
                self.vectors[track] = self._vector(track, window)
                self.ids[track] = self._assign(track, shot)
        tracks = rows.face_id.tolist()
        embedding = np.array([self.vectors[t] for t in tracks], np.float32).reshape(len(rows), EMBEDDING_DIM)
        return replace(rows, face_id=[self.ids[t] for t in tracks], embedding=embedding)

    def _vector(self, track: int, window: list[tuple[media.Frame, Faces]]) -> np.ndarray:
        vectors = [self.embedder.embed(frame.image, faces.keypoints_6[faces.face_id == track])
                   for frame, faces in window]
        mean = np.concatenate(vectors).mean(axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)

    def _assign(self, track: int, shot: int) -> int:
        if shot != self.shot:
            self.shot, self.taken = shot, set()
        scores = {i: float(self.vectors[track] @ total) / float(np.linalg.norm(total))
                  for i, total in self.identities.items() if i not in self.taken}
        best = max(scores, key=scores.__getitem__, default=None)
        merged = self.merge_threshold is not None and best is not None and scores[best] >= self.merge_threshold
        written = best if merged else track  # track ids never repeat, so an unmerged one is new
        self.identities[written] = self.identities.get(written, 0) + self.vectors[track]
        self.taken.add(written)
        return written


class KeyframeDetector:
    """A video's detections, frame by frame: a full scan on keyframes, and in between each face
    found before looked for again near its last box (``Detector.detect_near``), which costs a
    small fraction of a scan. A backend that cannot follow (``Detector.follows``) is scanned on
    every frame, as is every video with ``scan_every`` 1.

    Keyframes: every ``scan_every`` processed frames; any frame where a followed face is not
    found again; and, while no face is followed, every frame of a shot's first ``scan_every``
    (a shot's first frame, or the first after a blank one, may still be dark in a fade-in). A face
    that enters later in a shot is found at the next keyframe. On a keyframe the followed faces
    keep their followed boxes if the scan confirms them (or they score ``min_score`` in their
    crop) and the scan adds the faces they do not cover.
    """

    def __init__(self, detector: Detector, options: DetectOptions):
        self.detector, self.options = detector, options
        self.follows = detector.follows and options.scan_every > 1
        self.forget()

    def forget(self) -> None:
        """Nothing to follow, and the next frames are keyframes until a face is found (a new
        shot, a blank frame)."""
        self.last = FrameDetections.empty()
        self.since_scan = self.eager = self.options.scan_every

    def detect(self, image_rgb: np.ndarray) -> FrameDetections:
        self.since_scan += 1
        self.eager -= 1
        near = self._near(image_rgb)
        if near is not None and len(near) == len(self.last) and self.since_scan < self.options.scan_every \
                and (len(near) or self.eager < 0):
            self.last = near
            return near
        scanned, self.since_scan = self.detector.detect(image_rgb), 0
        found = scanned if near is None else _union(near, scanned, self.options.min_score)
        self.last = found[: self.options.max_faces] if self.options.max_faces else found
        return self.last

    def _near(self, image_rgb: np.ndarray) -> FrameDetections | None:
        if not self.follows:
            return None
        if not len(self.last):
            return FrameDetections.empty()  # nothing to follow, nothing lost
        return self.detector.detect_near(image_rgb, self.last.boxes_xywh)


def _union(followed: FrameDetections, scanned: FrameDetections, min_score: float) -> FrameDetections:
    """A keyframe's faces, best first: the followed ones that the scan confirms (a scanned face's
    centre in their box) or that score ``min_score`` themselves, and the scanned ones that none of
    them covers; NMS removes the duplicates of two followed boxes that met on one face."""
    inside = points_in_boxes(box_centres(scanned.boxes_xywh), followed.boxes_xywh)  # (scanned, followed)
    kept = followed[inside.any(axis=0) | (followed.scores >= min_score)]
    merged = FrameDetections.concat([kept, scanned[~inside.any(axis=1)]])
    return merged[nms(merged.boxes_xywh, merged.scores, 0.3, contained=0.6)]


def faces_from_detections(frame: media.Frame, shot: int, ids: np.ndarray, dets: FrameDetections) -> Faces:
    n = len(dets)
    return Faces(frame_index=np.full(n, frame.index), timestamp_s=np.full(n, frame.timestamp_s), face_id=ids,
                 shot=np.full(n, shot), score=dets.scores, box_xywh=dets.boxes_xywh, keypoints_6=dets.keypoints_6)


def iter_detect(path: Path, options: DetectOptions, detector: Detector | None = None,
                info: media.MediaInfo | None = None,
                identities: TrackIdentities | None = None) -> Iterator[tuple[media.Frame, Faces]]:
    """Per processed frame: the frame and its tracked detections.

    In a video a track must be seen in ``min_track`` processed frames before its rows count:
    frames are held back that many frames, so a one-frame false positive never shows.
    """
    info = info or media.probe(path)
    detector = detector or options.create_detector(info)
    identities = identities or (options.create_identities() if options.embeds else None)
    video = info.kind == "video"
    cuts, tracker = ShotCutDetector(flag_blank=video), FaceTracker()
    min_track = options.min_track if video else 1
    held: deque[tuple[media.Frame, Faces]] = deque()
    hits: Counter[int] = Counter()
    processed = 0
    keyframes = KeyframeDetector(detector, options)
    for frame in media.iter_frames(path, info):
        if cuts.update_frame(frame):
            tracker.new_shot()
            keyframes.forget()  # faces are not followed across a cut, even one on a skipped frame
        if frame.index % options.every:
            continue
        if cuts.blank:
            keyframes.forget()
            dets = FrameDetections.empty()
        else:
            dets = keyframes.detect(frame.image)
        faces = faces_from_detections(frame, cuts.shot, tracker.update(dets.boxes_xywh), dets)
        hits.update(faces.face_id.tolist())
        held.append((frame, faces))
        processed += 1
        if len(held) >= min_track:
            yield _confirmed(held, hits, min_track, identities)
    if processed < min_track:  # a clip shorter than that (a GIF, a one-frame video) keeps all it found
        min_track = 1
    while held:
        yield _confirmed(held, hits, min_track, identities)


def _confirmed(held: deque[tuple[media.Frame, Faces]], hits: Counter[int], min_track: int,
               identities: TrackIdentities | None) -> tuple[media.Frame, Faces]:
    """The oldest held frame and its rows of confirmed tracks (labelled, when embedding)."""
    frame, faces = held[0]
    faces = faces[np.array([hits[i] >= min_track for i in faces.face_id.tolist()], bool)]
    if identities:
        faces = identities.label(faces, list(held))
    held.popleft()
    return frame, faces


def detect(path: str | Path, **options: object) -> Faces:
    """Faces in an image or video, tracked across frames. Options: see :class:`DetectOptions`."""
    opts, path = DetectOptions(**options), Path(path)
    info = media.probe(path)
    detector = opts.create_detector(info)
    identities = opts.create_identities() if opts.embeds else None
    header = formats.make_header("faces", opts.backend, _settings(opts, detector, identities), path, info)
    parts = [rows for _, rows in iter_detect(path, opts, detector, info, identities)]
    return Faces.concat(parts, header=header)


def _settings(options: DetectOptions, detector: Detector, identities: TrackIdentities | None) -> dict[str, object]:
    """What a header records: the options as given and the backends' resolved settings."""
    embedder = {"embedder": identities.embedder.settings()} if identities else {}
    return {**asdict(options), "detector": detector.settings(), **embedder}


def detect_file(source: Path, output: Path, options: DetectOptions, preview: Path | None = None,
                progress: ProgressCallback | None = None) -> FileStats:
    """The batch worker: ``source`` media to a faces file at ``output``."""
    info = media.probe(source)
    detector = options.create_detector(info)
    identities = options.create_identities() if options.embeds else None
    return run_to_file(
        iter_detect(source, options, detector, info, identities), stage_format="faces", source=source, info=info,
        output=output, backend=options.backend, settings=_settings(options, detector, identities),
        preview=preview, draw=draw_faces, progress=progress, frame_step=options.every,
    )
