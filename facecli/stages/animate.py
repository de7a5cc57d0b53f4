"""``animate``: a lip-synced talking portrait from one image and speech.

speech (facecli.speech) -> motion (facecli.motion) -> per frame: the portrait's mesh deformed
by the motion (facecli.face_rig), the image warped by it (facecli.meshwarp) and the mouth
interior painted (facecli.mouth) -> H.264 with the speech muxed in. The motion is written
too (``<out>.motion.parquet``, optionally Live Link Face CSV and Rhubarb mouth cues), so the
same speech can drive other renderers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import exchange, formats, media
from ..errors import InputError, NoFaceFound, UsageError
from ..eyelids import LidPainter
from ..face_rig import FaceRig
from ..meshwarp import MeshWarp
from ..motion import MotionOptions, generate_motion
from ..mouth import MouthPainter
from ..results import FACE_CONTROLS, Landmarks, Motion
from ..speech import analyse_speech
from .common import FileStats, ProgressCallback
from .landmarks import landmarks

CROP_FACE_FRACTION = 0.42  # with --crop, the face box spans this fraction of the output side
ENCODER_PRESET = "veryfast"  # 512 x 512 encodes at ~2 ms a frame, in ffmpeg's own process


@dataclass(frozen=True)
class AnimateOptions:
    """Everything ``animate`` needs besides the portrait and where the video goes."""

    audio: str
    transcript: str | None = None
    fps: float = 25.0
    expression: str = "neutral"
    intensity: float = 0.7
    head_motion: float = 1.0
    blink_rate: float = 17.0  # blinks per minute
    seed: int = 0
    crop: bool = False
    size: int = 512  # px, the output side with crop
    face_id: int | None = None
    motion_only: bool = False
    livelink: bool = False
    cues: str | None = None  # .json or .tsv path for Rhubarb-style mouth cues

    def __post_init__(self) -> None:
        if not 64 <= self.size <= 4096 or self.size % 2:
            raise UsageError(f"--size must be an even number of px within 64-4096, got {self.size}")
        if self.cues is not None and Path(self.cues).suffix.lower() not in (".json", ".tsv"):
            raise UsageError("--cues must name a .json or .tsv file", self.cues)
        self.motion_options()  # checks expression, fps and the scales

    def motion_options(self) -> MotionOptions:
        return MotionOptions(fps=self.fps, expression=self.expression, intensity=self.intensity,
                             head_motion=self.head_motion, blink_rate_per_min=self.blink_rate, seed=self.seed)


def motion_path(video: Path) -> Path:
    """``<video stem>.motion.parquet`` (a motion path is returned as is: --motion-only jobs)."""
    return video if video.name.endswith(".motion.parquet") else video.with_name(f"{video.stem}.motion.parquet")


def live_link_path(video: Path) -> Path:
    return video.with_name(f"{motion_path(video).name.removesuffix('.motion.parquet')}.livelink.csv")


# --------------------------------------------------------------------------- the portrait


@dataclass
class Portrait:
    image: np.ndarray  # HxWx3 uint8 RGB, even width and height
    landmarks_478: np.ndarray  # (478, 3) px
    face_id: int


def _pick_face(marks: Landmarks, face_id: int | None, path: Path) -> int:
    if not len(marks):
        raise NoFaceFound("no face found in the portrait; use a photo with a visible face", path)
    if face_id is None:
        return int(np.argmax(marks.box_xywh[:, 2] * marks.box_xywh[:, 3]))
    rows = np.flatnonzero(marks.face_id == face_id)
    if not rows.size:
        raise UsageError(f"no face with id {face_id} in the portrait; it has ids "
                         f"{', '.join(map(str, marks.face_id.tolist()))}", path)
    return int(rows[0])


def load_portrait(path: Path, options: AnimateOptions) -> Portrait:
    """The portrait (cropped to the face with ``crop``, else trimmed to even size) and its mesh."""
    if not media.is_image_path(path):
        raise InputError("a portrait must be an image (jpg, png, webp, bmp, tiff)", path)
    image = media.read_image(path)
    marks = landmarks(path)
    row = _pick_face(marks, options.face_id, path)
    points = marks.landmarks_478[row].astype(np.float64)
    if options.crop:
        x, y, w, h = marks.box_xywh[row]
        side = max(w, h) / CROP_FACE_FRACTION
        scale = options.size / side
        cx, cy = x + w / 2, y + h / 2 - 0.05 * h  # a little above the box centre: room for hair
        affine = np.array([[scale, 0, options.size / 2 - scale * cx], [0, scale, options.size / 2 - scale * cy]])
        image = cv2.warpAffine(image, affine, (options.size, options.size), flags=cv2.INTER_AREA
                               if scale < 1 else cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        points = np.concatenate([points[:, :2] @ affine[:, :2].T + affine[:, 2], points[:, 2:] * scale], axis=1)
    else:
        h, w = image.shape[:2]
        image = np.ascontiguousarray(image[: h - h % 2, : w - w % 2])
    return Portrait(image, points, int(marks.face_id[row]))


# --------------------------------------------------------------------------- rendering


class PortraitRenderer:
    """Renders frames of one portrait from motion rows."""

    def __init__(self, portrait: Portrait):
        h, w = portrait.image.shape[:2]
        self.rig = FaceRig(portrait.landmarks_478)
        self.head_ring_mm = self.rig.head_ring_mm()
        moving = np.concatenate([portrait.landmarks_478[:, :2], self.rig.to_image(self.head_ring_mm)[:, :2]])
        self.warp = MeshWarp(moving, self.rig.fixed_ring_px(), w, h)
        self.mouth = MouthPainter(portrait.image, portrait.landmarks_478)
        self.lids = LidPainter(portrait.image, portrait.landmarks_478)
        self.source = self.mouth.source_for_warp()
        self._blinks = [FACE_CONTROLS.index("blink_right"), FACE_CONTROLS.index("blink_left")]

    def render(self, controls: np.ndarray, head_pose_deg: np.ndarray, gaze_deg: np.ndarray) -> np.ndarray:
        face = self.rig.pose(controls, head_pose_deg, gaze_deg)
        ring = self.rig.to_image(self.head_ring_mm, head_pose_deg)
        frame = self.warp.warp(self.source, np.concatenate([face[:, :2], ring[:, :2]]))
        self.mouth.paint(frame, face)
        self.lids.paint(frame, face, tuple(controls[self._blinks]))
        return frame


def render_video(portrait: Portrait, motion: Motion, output: Path, audio: Path, fps: float,
                 progress: ProgressCallback | None = None) -> None:
    renderer = PortraitRenderer(portrait)
    h, w = portrait.image.shape[:2]
    with media.VideoWriter(output, w, h, fps, audio_from=audio, preset=ENCODER_PRESET) as writer:
        for i in range(len(motion)):
            writer.write(renderer.render(motion.face_controls[i], motion.head_pose_deg[i], motion.gaze_deg[i]))
            if progress and i % 25 == 24:
                progress(25)
    if progress and len(motion) % 25:
        progress(len(motion) % 25)


# --------------------------------------------------------------------------- the stage


def _motion_header(portrait_path: Path, audio: Path, options: AnimateOptions, speech_duration_s: float) -> dict[str, Any]:
    header = formats.make_header("motion", "facecli", asdict(options), portrait_path, media.probe(portrait_path))
    header["audio"] = {"path": str(audio.resolve()), "sha256_quick": formats.quick_hash(audio),
                       "duration_s": speech_duration_s}
    return header


def animate_file(source: Path, output: Path, options: AnimateOptions, preview: Path | None = None,
                 progress: ProgressCallback | None = None) -> FileStats:
    """The batch worker: portrait ``source`` + ``options.audio`` -> video ``output`` and its motion files.

    The motion file is written last: resume takes it as the proof that the job is complete.
    """
    audio = Path(options.audio)
    portrait = load_portrait(Path(source), options)
    speech = analyse_speech(audio, options.transcript)
    motion = generate_motion(speech, options.motion_options(), portrait.face_id)
    if not options.motion_only:
        render_video(portrait, motion, output, audio, options.fps, progress)
    if options.livelink:
        exchange.write_live_link_csv(motion, live_link_path(output), options.fps)
    if options.cues:
        exchange.write_mouth_cues(exchange.mouth_cues(speech.phones, speech.duration_s), Path(options.cues),
                                  str(audio), speech.duration_s)
    with formats.TableWriter(motion_path(output), "motion",
                             _motion_header(Path(source), audio, options, speech.duration_s)) as writer:
        writer.write(motion)
        writer.close(frames=len(motion), fps=options.fps)
    return FileStats(frames=len(motion), rows=len(motion), faces=1)


def animate(portrait: str | Path, audio: str | Path, output: str | Path, **options: Any) -> Motion:
    """Make ``output`` (an MP4) of ``portrait`` speaking ``audio``; returns the motion it used.

    Keyword options are :class:`AnimateOptions`' fields (``transcript``, ``expression``,
    ``head_motion``, ``seed``, ``crop``, ``size``, ...). Also writes
    ``<output stem>.motion.parquet`` (and the Live Link CSV / mouth cues when asked).
    """
    output = Path(output)
    animate_file(Path(portrait), output, AnimateOptions(audio=str(audio), **options))
    return formats.read_table(motion_path(output))
