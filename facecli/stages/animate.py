"""``animate``: a lip-synced talking portrait from one image and speech.

speech (facecli.speech) -> motion (facecli.motion) -> per frame: the portrait's mesh deformed
by the motion (facecli.face_rig), the image warped by it (facecli.meshwarp) and the mouth
interior painted (facecli.mouth), the face optionally refined by a diffusion model
(facecli.diffusion, ``diffusion``) -> H.264 with the speech muxed in. The motion is written
too (``<out>.motion.parquet``, optionally Live Link Face CSV and Rhubarb mouth cues), so the
same speech can drive other renderers.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import exchange, formats, media
from ..diffusion import DiffusionOptions, DiffusionRefiner
from ..errors import UsageError
from ..motion import MotionOptions, generate_motion
from ..portrait import Portrait, PortraitRenderer, check_side, load_portrait
from ..results import Motion
from ..speech import SpeechAnalysis, analyse_speech
from .common import FileStats, ProgressCallback, all_or_nothing
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
    diffusion: DiffusionOptions | None = None  # the diffusers renderer; None: the geometric one alone

    def __post_init__(self) -> None:
        check_side(self.size)
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


def render_video(portrait: Portrait, motion: Motion, output: Path, audio: Path, fps: float,
                 progress: ProgressCallback | None = None, diffusion: DiffusionOptions | None = None) -> None:
    renderer = PortraitRenderer(portrait)
    refiner = DiffusionRefiner(portrait.image, portrait.landmarks_478, diffusion) if diffusion else None
    h, w = portrait.image.shape[:2]
    with media.VideoWriter(output, w, h, fps, audio_from=audio, preset=ENCODER_PRESET,
                           frames_expected=len(motion)) as writer:
        for i in range(len(motion)):
            pose = (motion.face_controls[i], motion.head_pose_deg[i], motion.gaze_deg[i])
            frame = renderer.render(*pose)
            writer.write(refiner.refine(frame, renderer.rig.pose(*pose)) if refiner else frame)
            if progress and i % 25 == 24:
                progress(25)
    if progress and len(motion) % 25:
        progress(len(motion) % 25)


# --------------------------------------------------------------------------- the stage


def _motion_header(portrait_path: Path, audio: Path, options: AnimateOptions, speech_duration_s: float) -> dict[str, Any]:
    header = formats.make_header("motion", "facecli", asdict(options), portrait_path, media.probe(portrait_path),
                                 extra_inputs=(audio,))
    header["audio"] = {"path": str(audio.resolve()), "duration_s": speech_duration_s}  # its hash: extra_inputs
    return header


_SPEECH_KEPT = 2  # analyses kept for the next portraits of a batch
_speech_kept: dict[tuple[str, str, str | None], SpeechAnalysis] = {}
_speech_kept_lock = threading.Lock()  # animate() may run in several threads at once


def _speech(audio: Path, transcript: str | None, stop: threading.Event) -> SpeechAnalysis:
    """Speech analysis, once per audio file (and transcript) in a batch of portraits; the
    content hash keeps a changed file from being served stale."""
    key = (str(audio.resolve()), formats.quick_hash(audio) if audio.is_file() else "", transcript)
    with _speech_kept_lock:
        kept = _speech_kept.get(key)
    if kept is not None:
        return kept
    analysis = analyse_speech(audio, transcript, stop=stop)
    with _speech_kept_lock:
        while len(_speech_kept) >= _SPEECH_KEPT:
            del _speech_kept[next(iter(_speech_kept))]  # the oldest
        _speech_kept[key] = analysis
    return analysis


def animate_file(source: Path, output: Path, options: AnimateOptions, preview: Path | None = None,
                 progress: ProgressCallback | None = None) -> FileStats:
    """The batch worker: portrait ``source`` + ``options.audio`` -> video ``output`` and its motion files.

    The motion file is written last: resume takes it as the proof that the job is complete.
    """
    audio = Path(options.audio)
    # The speech is analysed while the portrait's landmarks are found: both run mostly in
    # native code that releases the GIL (pocketsphinx through facecli.sphinx, MediaPipe).
    stop = threading.Event()
    with ThreadPoolExecutor(1, "facecli-speech") as pool:
        speech_job = pool.submit(_speech, audio, options.transcript, stop)
        try:
            portrait = load_portrait(Path(source), options.crop, options.size, options.face_id)
            speech = speech_job.result()
        except BaseException:
            stop.set()  # a bad portrait or Ctrl-C: the pool's exit then waits about a second, not the whole analysis
            raise
    summary: dict[str, str] = {}
    if not speech.voiced.any():  # valid (an idle clip), but seldom what was meant
        summary["warning"] = "no speech found in the audio (silent or too quiet): the portrait only blinks"
        print(f"warning: {audio}: {summary['warning']}", file=sys.stderr, flush=True)
    motion = generate_motion(speech, options.motion_options(), portrait.face_id)
    cues = Path(options.cues) if options.cues else None
    with all_or_nothing(output, live_link_path(output), motion_path(output), *filter(None, [cues])):
        if not options.motion_only:
            render_video(portrait, motion, output, audio, options.fps, progress, options.diffusion)
        if options.livelink:
            exchange.write_live_link_csv(motion, live_link_path(output), options.fps)
        if cues:
            exchange.write_mouth_cues(exchange.mouth_cues(speech.phones, speech.duration_s), cues, str(audio),
                                      speech.duration_s)
        with formats.TableWriter(motion_path(output), "motion",
                                 _motion_header(Path(source), audio, options, speech.duration_s)) as writer:
            writer.write(motion)
            writer.close(frames=len(motion), fps=options.fps)
    return FileStats(frames=len(motion), rows=len(motion), faces=1, summary=summary)


def animate(portrait: str | Path, audio: str | Path, output: str | Path, **options: Any) -> Motion:
    """Make ``output`` (an MP4) of ``portrait`` speaking ``audio``; returns the motion it used.

    Keyword options are :class:`AnimateOptions`' fields (``transcript``, ``expression``,
    ``head_motion``, ``seed``, ``crop``, ``size``, ``diffusion``: a
    :class:`facecli.diffusion.DiffusionOptions` for the diffusers renderer, ...). Also writes
    ``<output stem>.motion.parquet`` (and the Live Link CSV / mouth cues when asked).
    """
    output = Path(output)
    animate_file(Path(portrait), output, AnimateOptions(audio=str(audio), **options))
    return formats.read_table(motion_path(output))
