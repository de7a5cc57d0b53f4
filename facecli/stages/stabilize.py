"""``stabilize`` (video mode): aligned face crops, or a full frame that follows the face.

1. The face's landmarks give, per frame, the similarity that maps its stable points (eye
   corners, nose bridge, temples: never the mouth or jaw, which move with expression) onto a
   template layout. The face is ``face_id``, else the one followed while it lasts: computed
   live, only that face is fitted (the most confident detection when a track starts); from a
   landmarks file, the largest face.
2. Per shot, the transforms' scale, roll and centre are smoothed without lag (a zero-phase
   Gaussian over a window reaching a little ahead, so each frame waits that long), frames
   without the face are interpolated across short gaps and held across long ones, and
   ``keep_scale`` / ``keep_rotation`` freeze those at the shot's first value so the face keeps
   its own.
3. Each frame is warped as soon as its transform is finished, in the same pass: a ``size``
   square crop (``crop`` mode), or the whole frame moved so the face stays where it was at the
   start of its shot (``frame`` mode). Frames go to the encoder as I420 straight from the
   decoded planes.

Writes ``<stem>.stabilized.mp4`` (with the audio) and ``<stem>.stabilize.parquet``: each
frame's 2x3 transform and its inverse, so processed crops can be pasted back.

``all_faces``: one such pair per face track, ``<stem>.face<ID>.stabilized.mp4`` and
``<stem>.face<ID>.stabilize.parquet``, covering the track's first to last frame (frames outside
it are not written; gaps inside it are interpolated or held as above). The landmarks are made
once (or a given landmarks file is used), then each track is one more streaming pass over the
video. Tracks seen in fewer than ``MIN_TRACK_S`` of frames are skipped. The index
``<stem>.tracks.stabilize.parquet``, written last, holds every track's rows and lists the
tracks in its header: it is what resume checks.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections import deque
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import cv2
import numpy as np

from .. import formats, media
from ..errors import InputError, NoFaceFound, UsageError
from ..facemodel import mean_face
from ..geometry import umeyama
from ..portrait import check_side
from ..results import Landmarks, Stabilization
from .common import FileStats, ProgressCallback, all_or_nothing
from .detect import DetectOptions
from .landmarks import LandmarkOptions, iter_landmarks
from .tracks import frames_with_rows, landmarks_source

# Eye corners, nose bridge, temples: points expression hardly moves.
STABLE_POINTS = np.array([33, 133, 362, 263, 168, 6, 197, 195, 127, 356, 162, 389])
# Where the eye centres and the nose tip go, as fractions of the output side.
TEMPLATES = {
    "ffhq": np.array([[0.375, 0.46], [0.625, 0.46], [0.5, 0.6]]),
    "arcface": np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366]]) / 112.0,
}
MODES = ("crop", "frame")
BORDERS = ("crop", "fill", "blur")
MAX_GAP_S = 0.5  # frames without the face: interpolated across gaps up to this, held beyond
MIN_TRACK_S = 0.5  # all_faces: tracks seen in fewer frames than this are skipped (stray detections)
TRACKS_INDEX = "tracks.stabilize"  # all_faces: the index is <stem>.tracks.stabilize.parquet
MEASURED, INTERPOLATED, HELD = 0, 1, 2
# superfast's search with veryfast's rate control (macroblock tree over 10 frames): on the
# example's crops, 0.52x veryfast's encoder CPU for 8% more bytes at the same PSNR; plain
# superfast takes 51% more bytes (benchmarks/stabilize_bench.py, CRF 18).
ENCODER_PRESET, ENCODER_PARAMS = "superfast", "mbtree=1:rc-lookahead=10"


@dataclass(frozen=True)
class StabilizeOptions:
    mode: str = "crop"
    size: int = 512  # px, the crop's side
    template: str = "ffhq"
    margin: float = 0.0  # extra border around the template layout, as a fraction of the side
    smooth_s: float = 0.04  # Gaussian sigma of the smoothing, seconds (0: none)
    keep_scale: bool = False
    keep_rotation: bool = False
    border: str = "blur"  # frame mode: what shows where the moved frame leaves the picture
    face_id: int | None = None
    all_faces: bool = False  # one output per track (see the module's docstring)

    def __post_init__(self) -> None:
        checks = [(not (self.all_faces and self.face_id is not None), "give --all-faces or --face-id, not both"),
                  (self.mode in MODES, f"--mode is one of {', '.join(MODES)}"),
                  (self.template in TEMPLATES, f"--template is one of {', '.join(TEMPLATES)}"),
                  (self.border in BORDERS, f"--border is one of {', '.join(BORDERS)}"),
                  (0.0 <= self.margin <= 2.0, "--margin must be within 0-2"),
                  (0.0 <= self.smooth_s <= 5.0, "--smooth must be within 0-5 s")]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        check_side(self.size)


def template_points(options: StabilizeOptions) -> np.ndarray:
    """(len(STABLE_POINTS), 2) px: where the stable points go in the crop."""
    model = mean_face().vertices_mm[:, :2]
    anchors = TEMPLATES[options.template] * options.size
    centre = np.full(2, options.size / 2)
    anchors = centre + (anchors - centre) / (1.0 + options.margin)
    s, rot, t = umeyama(model[[468, 473, 4]], anchors)
    return s * model[STABLE_POINTS] @ rot.T + t


# --------------------------------------------------------------------------- per-frame parameters


def _similarity(points_px: np.ndarray, template: np.ndarray) -> np.ndarray:
    """(4,) log scale, angle (rad) and the source point that lands on the template's centroid."""
    s, rot, t = umeyama(points_px, template)
    centre = (template.mean(axis=0) - t) @ np.linalg.inv(s * rot).T
    return np.array([np.log(s), np.arctan2(rot[1, 0], rot[0, 0]), *centre])


def _matrix(params: np.ndarray, template: np.ndarray) -> np.ndarray:
    """The 2x3 transform of (log scale, angle, source centre x, y)."""
    s, angle = np.exp(params[0]), params[1]
    rot = s * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    t = template.mean(axis=0) - rot @ params[2:]
    return np.concatenate([rot, t[:, None]], axis=1)


def _fill_gaps(params: np.ndarray, measured: np.ndarray, max_gap: int) -> np.ndarray:
    """Per frame status; ``params`` filled in place: short gaps interpolated, others held."""
    status = np.where(measured, MEASURED, HELD).astype(np.int8)
    known = np.flatnonzero(measured)
    frames = np.arange(len(params))
    for k in range(params.shape[1]):
        params[:, k] = np.interp(frames, known, params[known, k])  # holds the ends
    for a, b in zip(known[:-1], known[1:]):
        if 1 < b - a <= max_gap + 1:
            status[a + 1: b] = INTERPOLATED
        elif b - a > 1:
            params[a + 1: b] = params[a]  # a long gap holds the last measured transform
    return status


def _smooth(params: np.ndarray, sigma_frames: float) -> np.ndarray:
    if sigma_frames <= 0 or len(params) < 2:
        return params
    radius = int(np.ceil(3 * sigma_frames))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(params, ((radius, radius), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(params.shape[1])], axis=1)


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 of ``a`` after ``b``."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


def _invert(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(m)


class _Stream:
    """Per-frame similarity parameters in; finished transforms out, ``lag`` frames later.

    A frame is finished on a window around it (the frames since its shot began, up to 2 lags
    back, and ``lag`` ahead): short gaps interpolated, long ones held, then the zero-phase
    Gaussian. Only the parameters of past frames are kept (4 numbers a frame), never images.
    """

    def __init__(self, options: StabilizeOptions, fps: float, template: np.ndarray, frame_size: tuple[int, int]):
        self.options, self.template = options, template
        self.sigma = options.smooth_s * fps
        self.max_gap = int(round(MAX_GAP_S * fps))
        self.lag = max(int(np.ceil(3 * self.sigma)), self.max_gap) + 1
        self.params: list[np.ndarray] = []
        self.measured: list[bool] = []
        self.shot: list[int] = []
        self.first_of_shot: dict[int, int] = {}
        self.frozen: dict[int, np.ndarray] = {}  # shot -> its first finished (scale, angle), for keep_*
        w, h = frame_size  # before any face: a centred crop of the frame
        self.last = np.array([np.log(options.size / min(w, h)), 0.0, w / 2, h / 2])
        self.done = 0

    def push(self, params: np.ndarray | None, shot: int) -> None:
        self.first_of_shot.setdefault(shot, len(self.shot))
        self.params.append(params if params is not None else np.zeros(4))
        self.measured.append(params is not None)
        self.shot.append(shot)

    def ready(self, final: bool = False) -> list[tuple[int, np.ndarray, int]]:
        """(frame, params, status) of the frames that can be finished now."""
        out = []
        while self.done < len(self.shot) and (final or len(self.shot) - self.done > self.lag):
            out.append((self.done, *self._finish(self.done)))
            self.done += 1
        return out

    def _finish(self, f: int) -> tuple[np.ndarray, int]:
        shot = self.shot[f]
        lo = max(self.first_of_shot[shot], f - 2 * self.lag)
        hi = f + 1
        while hi < len(self.shot) and hi <= f + self.lag and self.shot[hi] == shot:
            hi += 1
        measured = np.array(self.measured[lo:hi])
        if not measured.any():
            return self.last, HELD
        params = np.array(self.params[lo:hi])
        status = _fill_gaps(params, measured, self.max_gap)[f - lo]
        finished = _smooth(params, self.sigma)[f - lo]
        frozen = self.frozen.setdefault(shot, finished[:2].copy())
        if self.options.keep_scale:
            finished[0] = frozen[0]
        if self.options.keep_rotation:
            finished[1] = frozen[1]
        self.last = finished
        return finished, int(status)


class _Framing:
    """Finished parameters -> the 2x3 transform of the output: the crop, or (frame mode) the
    whole frame moved so the face stays where it was at the start of its shot."""

    def __init__(self, options: StabilizeOptions, template: np.ndarray, frame_size: tuple[int, int]):
        self.options, self.template = options, template
        w, h = frame_size
        self.size = (options.size, options.size) if options.mode == "crop" else (w - w % 2, h - h % 2)
        self.reference: dict[int, np.ndarray] = {}  # shot -> template -> frame at the shot's start
        self.zoom: dict[int, float] = {}  # shot -> the zoom hiding borders so far (--border crop)

    def transform(self, params: np.ndarray, shot: int) -> np.ndarray:
        crop = _matrix(params, self.template)
        if self.options.mode == "crop":
            return crop
        back = self.reference.setdefault(shot, _invert(crop))
        moved = _compose(back, crop)
        if self.options.border == "crop":
            self.zoom[shot] = max(self.zoom.get(shot, 1.0), _cover_zoom(moved, *self.size))
            moved = _compose(_zoom_matrix(self.zoom[shot], *self.size), moved)
        return moved


def _zoom_matrix(zoom: float, w: int, h: int) -> np.ndarray:
    cx, cy = (w - 1) / 2, (h - 1) / 2
    return np.array([[zoom, 0, (1 - zoom) * cx], [0, zoom, (1 - zoom) * cy]])


def _cover_zoom(moved: np.ndarray, w: int, h: int) -> float:
    """The smallest zoom about the centre (2% steps) at which this frame shows no border. A
    shot keeps its largest so far: a zoom that only grows never pumps."""
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
    inv = _invert(moved)
    zoom = 1.0
    for _ in range(60):
        back = _compose(inv, _invert(_zoom_matrix(zoom, w, h)))
        points = corners @ back[:, :2].T + back[:, 2]
        if (points >= 0).all() and (points[:, 0] <= w - 1).all() and (points[:, 1] <= h - 1).all():
            break
        zoom *= 1.02
    return zoom


# --------------------------------------------------------------------------- the stage


def _warp(frame: media.Frame, transform: np.ndarray, size: tuple[int, int], options: StabilizeOptions) -> np.ndarray:
    """The output frame as I420, warped straight from a YUV frame's planes (no RGB made)."""
    fill = options.mode == "frame" and options.border == "fill"
    out = frame.crop_i420(transform, size, cv2.BORDER_CONSTANT if fill else cv2.BORDER_REFLECT)
    if options.mode == "frame" and options.border == "blur":
        inside = cv2.warpAffine(np.ones(frame.shape[:2], np.uint8), transform, size, flags=cv2.INTER_NEAREST)
        if not inside.all():
            for plane, step in zip(media.i420_planes(out), (1, 2, 2)):
                blurred = cv2.GaussianBlur(plane, (0, 0), max(size) / 60 / step)
                np.copyto(plane, blurred, where=inside[::step, ::step] == 0)
    return out


def stabilized_path(output: Path) -> Path:
    """The video beside a stabilize file: ``<stem>.stabilized.mp4``."""
    return output.with_name(output.name.replace(".stabilize.parquet", ".stabilized.mp4"))


def tracks_path(output: Path) -> Path:
    """all_faces: the index named after the single-face file ``<stem>.stabilize.parquet``:
    ``<stem>.tracks.stabilize.parquet``."""
    return output.with_name(output.name.replace(".stabilize.parquet", f".{TRACKS_INDEX}.parquet"))


def track_path(index: Path, face_id: int) -> Path:
    """all_faces: one track's transforms beside the index, ``<stem>.face<ID>.stabilize.parquet``
    (its video: ``stabilized_path`` of that)."""
    stem = index.name.removesuffix(f".{TRACKS_INDEX}.parquet").removesuffix(".stabilize.parquet")
    return index.with_name(f"{stem}.face{face_id}.stabilize.parquet")


class _Follower:
    """Which face each frame's transform follows: ``face_id``, else the current track while it
    lasts, then the largest face in the rows (a cut starts new ids, so the main face is found
    again). Live landmarks without ``face_id`` hold one face a frame (``_frames_with_rows``)."""

    def __init__(self, face_id: int | None):
        self.wanted, self.current = face_id, None
        self.seen: set[int] = set()  # every face id met, for the error when ``face_id`` never is

    def pick(self, rows: Landmarks) -> int | None:
        """Row of the followed face in this frame's rows, or None."""
        ids = rows.face_id.tolist()
        self.seen.update(ids)
        if self.wanted is not None:
            return ids.index(self.wanted) if self.wanted in ids else None
        if self.current not in ids:
            if not ids:
                return None
            self.current = ids[int(np.argmax(rows.box_xywh[:, 2] * rows.box_xywh[:, 3]))]
        return ids.index(self.current)


def _frames_with_rows(source: Path, video: Path, info: media.MediaInfo,
                      one_face: bool = False) -> Iterator[tuple[media.Frame, Landmarks]]:
    """Each decoded frame and its landmark rows: computed live from media (or a faces file), or
    read from a landmarks file alongside the decoded frames. ``one_face``: live landmarks of one
    face a frame (the tracked one while it lasts, then the most confident detection), where
    nothing asks for the others: fits of faces that are not followed would be wasted."""
    if formats.stage_of(source) != "landmarks":
        return iter_landmarks(source, LandmarkOptions(detect=DetectOptions(max_faces=1 if one_face else 0)),
                              head_pose=False)  # the transforms use the mesh alone
    return frames_with_rows(source, video, info)


def stabilize_file(source: Path, output: Path, options: StabilizeOptions, preview: Path | None = None,
                   progress: ProgressCallback | None = None) -> FileStats:
    """The batch worker: a video (or a faces or landmarks file of one) -> ``output`` (the
    transforms) and the stabilized video beside it. With ``all_faces``, ``output`` is the index
    (``tracks_path``) and each track gets its own pair beside it (``track_path``)."""
    source = Path(source)
    if options.all_faces:
        return _stabilize_tracks(source, output, options, progress)
    video = _video_of(source)
    info = media.probe(video)
    with all_or_nothing(stabilized_path(output), output):
        frames = _frames_with_rows(source, video, info, one_face=options.face_id is None)
        rows = _stabilize_pass(frames, output, options, source, video, info,
                               video if info.has_audio else None, progress)
    return FileStats(frames=len(rows), rows=len(rows), faces=len({r[3] for r in rows}))


def _video_of(source: Path) -> Path:
    return Path(formats.read_header(source)["source"]["path"]) if formats.stage_of(source) else source


def _stabilize_pass(frames: Iterator[tuple[media.Frame, Landmarks]], output: Path, options: StabilizeOptions,
                    source: Path, video: Path, info: media.MediaInfo, audio: Path | None,
                    progress: ProgressCallback | None, frames_expected: int | None = None,
                    start_s: float | None = None) -> list:
    """``frames`` and their landmark rows -> ``output`` and the stabilized video beside it, in one
    pass: each frame waits (a lag's worth of images) until its transform is finished. The
    transforms file is written last. Returns its rows. The video is resampled to a constant rate
    by the frames' times (media.VideoWriter), from ``start_s`` (default: the first frame's);
    ``frames_expected``: its exact frame count, where known, lets the encoder take the audio
    itself."""
    fps = info.fps or 25.0
    template = template_points(options)
    stream = _Stream(options, fps, template, (info.width, info.height))
    framing = _Framing(options, template, (info.width, info.height))
    follower = _Follower(options.face_id)
    # transform, status, shot, face id, source frame, its time (s)
    rows: list[tuple[np.ndarray, int, int, int, int, float]] = []
    waiting: deque[tuple[int, int, media.Frame]] = deque()  # (frame index, face id, frame) not finished yet
    shot = face = 0
    with media.VideoWriter(stabilized_path(output), *framing.size, media.output_fps(info) or fps, audio_from=audio,
                           preset=ENCODER_PRESET, x264_params=ENCODER_PARAMS,
                           yuv_matrix=info.yuv_matrix or "bt601",  # as crop_i420
                           frames_expected=frames_expected, start_s=start_s) as video_out, \
            media.WriterThread(lambda made: video_out.write(*made),  # placed by its source time
                               lambda job: (_warp(*job, framing.size, options), job[0].timestamp_s)) as writer:
        for frame, marks in frames:
            row = follower.pick(marks)
            shot = int(marks.shot[0]) if len(marks) else shot
            face = int(marks.face_id[row]) if row is not None else face
            waiting.append((frame.index, face, frame))  # warped on the writer thread
            stream.push(_similarity(marks.landmarks_478[row, STABLE_POINTS, :2].astype(np.float64), template)
                        if row is not None else None, shot)
            _emit(stream.ready(), stream, framing, waiting, writer, rows, progress)
        _emit(stream.ready(final=True), stream, framing, waiting, writer, rows, progress)
        if not any(status != HELD for _, status, *_ in rows):
            _no_face(follower, "image" if info.kind == "image" else "video", source)
    _write_table(output, rows, options, video, info, source, framing.size)
    return rows


def _no_face(follower: _Follower, what: str, source: Path) -> NoReturn:
    if follower.wanted is not None and follower.seen:
        raise UsageError(f"no face with id {follower.wanted} in the {what}; it has ids "
                         f"{', '.join(map(str, sorted(follower.seen)))}", source)
    raise NoFaceFound(f"no face found in the {what}; use one with a visible face", source)


def _emit(finished: list[tuple[int, np.ndarray, int]], stream: _Stream, framing: _Framing, waiting: deque,
          writer: media.WriterThread, rows: list, progress: ProgressCallback | None) -> None:
    for index, params, status in finished:
        frame_index, face, frame = waiting.popleft()
        transform = framing.transform(params, stream.shot[index])
        writer.put((frame, transform))
        rows.append((transform, status, stream.shot[index], face, frame_index, frame.timestamp_s))
        if progress:
            progress(1)


def _write_table(output: Path, rows: list, options: StabilizeOptions, video: Path,
                 info: media.MediaInfo, source: Path, size: tuple[int, int]) -> None:
    n = len(rows)
    transforms = np.stack([r[0] for r in rows])
    table = Stabilization(
        frame_index=[r[4] for r in rows], timestamp_s=[r[5] for r in rows], face_id=[r[3] for r in rows],
        shot=[r[2] for r in rows], transform_2x3=transforms, inverse_2x3=np.stack([_invert(m) for m in transforms]),
        status=[r[1] for r in rows])
    header = formats.make_header("stabilize", "facecli", asdict(options), video, info, source)
    with formats.TableWriter(output, "stabilize", header) as writer:
        writer.write(table)
        writer.close(frames=n, output_size=list(size))


# --------------------------------------------------------------------------- all_faces: one output per track


def _stabilize_tracks(source: Path, index: Path, options: StabilizeOptions,
                      progress: ProgressCallback | None) -> FileStats:
    """The landmarks once, then per track one pass over the video from its first to its last
    frame (memory as for one face); the index last, so that it proves every track done."""
    with tempfile.TemporaryDirectory(prefix="facecli-stabilize-") as tmp:
        marks = landmarks_source(source, Path(tmp), "input", smooth=False)  # every face, unsmoothed
        video = _video_of(marks)
        info = media.probe(video)
        fps = info.fps or 25.0
        spans = _track_spans(marks)
        kept = {face: span for face, span in spans.items() if span.seen >= MIN_TRACK_S * fps}
        if not kept:
            raise NoFaceFound(f"no face track lasts {MIN_TRACK_S} s; use a video with a steadily visible face", source)
        tables = {face: track_path(index, face) for face in kept}
        index.unlink(missing_ok=True)  # an old index must not vouch for tracks that a failure leaves half redone
        written = 0
        out_fps, grid_s = media.output_fps(info) or fps, _first_frame_s(video, info)
        with all_or_nothing(index, *tables.values(), *map(stabilized_path, tables.values())):
            for face, span in kept.items():
                start, count = _on_grid(span, grid_s, out_fps)
                audio = _cut_audio(video, start / out_fps, count / out_fps, Path(tmp)) if info.has_audio else None
                frames = islice(_frames_with_rows(marks, video, info), span.first, span.last + 1)
                evenly = count == span.last + 1 - span.first  # else rounding could add or take a frame
                written += len(_stabilize_pass(frames, tables[face], replace(options, all_faces=False, face_id=face),
                                               source, video, info, audio, progress, count if evenly else None,
                                               grid_s + start / out_fps))
            _write_index(index, tables, spans, options, source, video, info)
    return FileStats(frames=written, rows=written, faces=len(kept))


class _Span(NamedTuple):
    """One track of a landmarks file: its first and last frames, their times (s), frames seen."""

    first: int
    last: int
    first_s: float
    last_s: float
    seen: int


def _track_spans(marks: Path) -> dict[int, _Span]:
    """face id -> the span of each track of a landmarks file."""
    spans: dict[int, _Span] = {}
    for batch in formats.iter_batches(marks):
        for face, frame, time_s in zip(batch.face_id.tolist(), batch.frame_index.tolist(), batch.timestamp_s.tolist()):
            span = spans.get(face, _Span(frame, frame, time_s, time_s, 0))
            spans[face] = span._replace(last=frame, last_s=time_s, seen=span.seen + 1)
    return spans


def _first_frame_s(video: Path, info: media.MediaInfo) -> float:
    with closing(media.frame_times(video, info)) as times:
        return next(times)


def _on_grid(span: _Span, grid_s: float, fps: float) -> tuple[int, int]:
    """(first output frame, frame count) of a track's video on the grid a whole-video stabilize
    puts frames on (frame 0 at the video's first frame, ``grid_s``, then ``fps`` apart), so its
    audio is cut where its pictures are: for evenly spaced frames, their own indices and count."""
    start = media.cfr_frame(span.first_s, grid_s, fps)
    return start, media.cfr_frame(span.last_s, grid_s, fps) + 1 - start


def _cut_audio(video: Path, start_s: float, duration_s: float, folder: Path) -> Path:
    """The video's audio under one track's frames, as WAV (lossless: the writer encodes it once)."""
    out = folder / "track-audio.wav"
    cmd = [media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-ss", f"{start_s:.6f}",
           "-t", f"{duration_s:.6f}", "-i", f"file:{video.resolve()}", "-map", "0:a:0", "-c:a", "pcm_s16le",
           f"file:{out}"]
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise InputError(f"ffmpeg cannot cut its audio ({last}); re-encode the video", video)
    return out


def _write_index(index: Path, tables: dict[int, Path], spans: dict[int, _Span],
                 options: StabilizeOptions, source: Path, video: Path, info: media.MediaInfo) -> None:
    """Every written track's rows in one table; the header lists those tracks and the skipped ones."""
    header = formats.make_header("stabilize", "facecli", asdict(options), video, info, source)
    with formats.TableWriter(index, "stabilize", header) as writer:
        for table in tables.values():
            for batch in formats.iter_batches(table):
                writer.write(batch)
        writer.close(
            tracks=[{"face_id": face, "first_frame": spans[face].first, "last_frame": spans[face].last,
                     "table": table.name, "video": stabilized_path(table).name} for face, table in tables.items()],
            skipped=[{"face_id": face, "frames_seen": span.seen} for face, span in spans.items()
                     if face not in tables])


def stabilize(video: str | Path, output: str | Path, **options: Any) -> Stabilization | dict[int, Stabilization]:
    """Stabilize one video into ``output`` (a ``.stabilize.parquet``; the video goes beside it).

    ``all_faces=True``: every track into its own pair beside ``output`` (``track_path`` of
    ``tracks_path(output)``, the index); returns {face id: that track's Stabilization}.
    """
    output, opts = Path(output), StabilizeOptions(**options)
    if not opts.all_faces:
        stabilize_file(Path(video), output, opts)
        return formats.read_table(output)
    index = tracks_path(output)
    stabilize_file(Path(video), index, opts)
    return {track["face_id"]: formats.read_table(index.with_name(track["table"]))
            for track in formats.read_header(index)["tracks"]}
