"""``stabilize`` (video mode): aligned face crops, or a full frame that follows the face.

1. The face's landmarks (``face_id``, or in each shot its longest track) give, per frame, the
   similarity that maps its stable points (eye corners, nose bridge, temples: never the
   mouth or jaw, which move with expression) onto a template layout.
2. Per shot, the transforms' scale, roll and centre are smoothed without lag (a zero-phase
   Gaussian: the whole track is known), frames without the face are interpolated across
   short gaps and held across long ones, and ``keep_scale`` / ``keep_rotation`` freeze those
   at the shot's median so the face keeps its own.
3. The video is decoded again and each frame warped: a ``size`` square crop (``crop`` mode),
   or the whole frame held on the face's median place in its shot (``frame`` mode).

Writes ``<stem>.stabilized.mp4`` (with the audio) and ``<stem>.stabilize.parquet``: each
frame's 2x3 transform and its inverse, so processed crops can be pasted back.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import formats, media
from ..errors import NoFaceFound, UsageError
from ..facemodel import mean_face
from ..geometry import umeyama
from ..results import Stabilization
from .animate import ENCODER_PRESET
from .common import FileStats, ProgressCallback
from .tracks import landmarks_source

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
MEASURED, INTERPOLATED, HELD = 0, 1, 2


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

    def __post_init__(self) -> None:
        checks = [(self.mode in MODES, f"--mode is one of {', '.join(MODES)}"),
                  (self.template in TEMPLATES, f"--template is one of {', '.join(TEMPLATES)}"),
                  (self.border in BORDERS, f"--border is one of {', '.join(BORDERS)}"),
                  (64 <= self.size <= 4096 and self.size % 2 == 0, "--size must be an even number of px within 64-4096"),
                  (0.0 <= self.margin <= 2.0, "--margin must be within 0-2"),
                  (0.0 <= self.smooth_s <= 5.0, "--smooth must be within 0-5 s")]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)


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


@dataclass
class Plan:
    """Everything the render pass needs, per frame."""

    transforms: np.ndarray  # (F, 2, 3) source px -> output px
    status: np.ndarray  # (F,)
    shot: np.ndarray  # (F,)
    out_size: tuple[int, int]  # width, height


def _track_params(marks: Path, chosen: dict[int, int], frames: int, template: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per frame: parameters of the chosen face (``chosen``: shot -> face id), whether it was
    measured there, and the shot (frames without any face keep the shot before them)."""
    params = np.zeros((frames, 4))
    measured = np.zeros(frames, bool)
    shots: dict[int, int] = {}
    for batch in formats.iter_batches(marks):
        for row in range(len(batch)):
            frame, shot = int(batch.frame_index[row]), int(batch.shot[row])
            shots[frame] = shot
            if frame < frames and chosen.get(shot) == int(batch.face_id[row]):
                params[frame] = _similarity(batch.landmarks_478[row, STABLE_POINTS, :2].astype(np.float64), template)
                measured[frame] = True
    shot = np.zeros(frames, np.int64)
    last = 0
    for f in range(frames):
        last = shots.get(f, last)
        shot[f] = last
    return params, measured, shot


def plan(marks: Path, info: media.MediaInfo, frames: int, options: StabilizeOptions, chosen: dict[int, int]) -> Plan:
    template = template_points(options)
    params, measured, shot = _track_params(marks, chosen, frames, template)
    fps = info.fps or 25.0
    status = np.full(frames, HELD, np.int8)
    covered = np.zeros(frames, bool)  # frames of shots in which the face appears
    for s in np.unique(shot):
        part = shot == s
        if not measured[part].any():
            continue
        p = params[part]
        status[part] = _fill_gaps(p, measured[part], int(round(MAX_GAP_S * fps)))
        p = _smooth(p, options.smooth_s * fps)
        if options.keep_scale:
            p[:, 0] = np.median(p[:, 0])
        if options.keep_rotation:
            p[:, 1] = np.median(p[:, 1])
        params[part], covered[part] = p, True
    _hold_uncovered(params, covered)
    transforms = np.stack([_matrix(p, template) for p in params])
    size = (options.size, options.size)
    if options.mode == "frame":
        transforms, size = _frame_mode(transforms, shot, info, template, options)
    return Plan(transforms, status, shot, size)


def _hold_uncovered(params: np.ndarray, covered: np.ndarray) -> None:
    """Shots without the face hold the transform of the frame before them (or after, at the start)."""
    known = np.flatnonzero(covered)
    for frame in np.flatnonzero(~covered):
        before = known[known < frame]
        params[frame] = params[before[-1] if before.size else known[0]]


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 of ``a`` after ``b``."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


def _invert(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(m)


def _frame_mode(transforms: np.ndarray, shot: np.ndarray, info: media.MediaInfo, template: np.ndarray,
                options: StabilizeOptions) -> tuple[np.ndarray, tuple[int, int]]:
    """Whole frames, moved so the face stays at its median place, size and roll in each shot."""
    w, h = info.width - info.width % 2, info.height - info.height % 2
    out = np.empty_like(transforms)
    for s in np.unique(shot):
        part = np.flatnonzero(shot == s)
        median = np.median([_similarity_of(transforms[i]) for i in part], axis=0)
        back = _invert(_matrix(median, template))  # template -> where the face sits on average
        moved = np.stack([_compose(back, transforms[i]) for i in part])
        if options.border == "crop":
            moved = _zoom_to_cover(moved, w, h)
        out[part] = moved
    return out, (w, h)


def _similarity_of(m: np.ndarray) -> np.ndarray:
    """(log scale, angle, tx, ty) of a similarity 2x3, for taking medians."""
    return np.array([np.log(np.hypot(m[0, 0], m[1, 0])), np.arctan2(m[1, 0], m[0, 0]), m[0, 2], m[1, 2]])


def _zoom_to_cover(moved: np.ndarray, w: int, h: int) -> np.ndarray:
    """Zoom about the centre just enough that no frame shows a border (for --border crop)."""
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    zoom = 1.0
    for m in moved:
        inv = _invert(m)
        for _ in range(40):  # the smallest zoom whose corners all land inside this frame
            back = (centre + (corners - centre) / zoom) @ inv[:, :2].T + inv[:, 2]
            if (back >= 0).all() and (back[:, 0] <= w - 1).all() and (back[:, 1] <= h - 1).all():
                break
            zoom *= 1.02
    scale = np.array([[zoom, 0, (1 - zoom) * centre[0]], [0, zoom, (1 - zoom) * centre[1]]])
    return np.stack([_compose(scale, m) for m in moved])


# --------------------------------------------------------------------------- the stage


def _warp(image: np.ndarray, transform: np.ndarray, size: tuple[int, int], options: StabilizeOptions) -> np.ndarray:
    if options.mode == "frame" and options.border == "fill":
        return cv2.warpAffine(image, transform, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    out = cv2.warpAffine(image, transform, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if options.mode == "frame" and options.border == "blur":
        inside = cv2.warpAffine(np.ones(image.shape[:2], np.uint8), transform, size, flags=cv2.INTER_NEAREST)
        if not inside.all():
            blurred = cv2.GaussianBlur(out, (0, 0), max(size) / 60)
            out = np.where(inside[..., None] > 0, out, blurred)
    return out


def stabilized_path(output: Path) -> Path:
    """The video beside a stabilize file: ``<stem>.stabilized.mp4``."""
    return output.with_name(output.name.replace(".stabilize.parquet", ".stabilized.mp4"))


def _faces(marks: Path, options: StabilizeOptions, source: Path) -> dict[int, int]:
    """shot -> the face followed in it: ``face_id`` where it appears, else each shot's longest
    track (a cut starts new track ids, so the main face is picked again after each cut)."""
    counts: dict[tuple[int, int], int] = {}
    for batch in formats.iter_batches(marks):
        for shot, face_id in zip(batch.shot.tolist(), batch.face_id.tolist()):
            counts[shot, face_id] = counts.get((shot, face_id), 0) + 1
    if not counts:
        raise NoFaceFound("no face found in the video; use one with a visible face", source)
    if options.face_id is not None:
        chosen = {shot: face for shot, face in counts if face == options.face_id}
        if not chosen:
            ids = sorted({face for _, face in counts})
            raise UsageError(f"no face with id {options.face_id}; the video has ids {', '.join(map(str, ids))}", source)
        return chosen
    chosen: dict[int, int] = {}
    for (shot, face), n in sorted(counts.items()):
        if n > counts.get((shot, chosen.get(shot, -1)), 0):
            chosen[shot] = face
    return chosen


def stabilize_file(source: Path, output: Path, options: StabilizeOptions, preview: Path | None = None,
                   progress: ProgressCallback | None = None) -> FileStats:
    """The batch worker: a video (or its landmarks file) -> ``output`` (the transforms) and
    the stabilized video beside it. The transforms file is written last (resume's proof)."""
    with tempfile.TemporaryDirectory(prefix="facecli-stabilize-") as tmp:
        marks = landmarks_source(Path(source), Path(tmp), "video", smooth=False)
        header = formats.read_header(marks)
        video = Path(header["source"]["path"])
        info = media.probe(video)
        frames = int(header.get("frames_processed", 0))
        chosen = _faces(marks, options, Path(source))
        the_plan = plan(marks, info, frames, options, chosen)
    _render(video, info, the_plan, options, stabilized_path(output), progress)
    rows = Stabilization(
        frame_index=np.arange(frames), timestamp_s=np.arange(frames) / (info.fps or 25.0),
        face_id=np.array([chosen.get(int(s), -1) for s in the_plan.shot]), shot=the_plan.shot, transform_2x3=the_plan.transforms,
        inverse_2x3=np.stack([_invert(m) for m in the_plan.transforms]), status=the_plan.status)
    settings: dict[str, Any] = asdict(options)
    with formats.TableWriter(output, "stabilize", formats.make_header("stabilize", "facecli", settings, video, info,
                                                                     Path(source))) as writer:
        writer.write(rows)
        writer.close(frames=frames, output_size=list(the_plan.out_size))
    return FileStats(frames=frames, rows=frames, faces=1)


def _render(video: Path, info: media.MediaInfo, the_plan: Plan, options: StabilizeOptions, out: Path,
            progress: ProgressCallback | None) -> None:
    width, height = the_plan.out_size
    with media.VideoWriter(out, width, height, info.fps or 25.0, audio_from=video if info.has_audio else None,
                           preset=ENCODER_PRESET) as writer:
        for frame in media.iter_frames(video, info):
            if frame.index >= len(the_plan.transforms):
                break
            writer.write(_warp(frame.image, the_plan.transforms[frame.index], (width, height), options))
            if progress:
                progress(1)


def stabilize(video: str | Path, output: str | Path, **options: Any) -> Stabilization:
    """Stabilize one video into ``output`` (a ``.stabilize.parquet``; the video goes beside it)."""
    output = Path(output)
    stabilize_file(Path(video), output, StabilizeOptions(**options))
    return formats.read_table(output)
