"""``facecli animate``."""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from .. import diffusion
from ..backends import models as model_files
from ..batch import Job
from ..errors import InputError, UsageError
from ..motion import EXPRESSIONS
from ..stages.animate import AnimateOptions, animate_file, motion_path
from . import common, pairs
from .models import ModelDir

Expression = Enum("Expression", {name: name for name in EXPRESSIONS}, type=str)  # type: ignore[misc]
Renderer = Enum("Renderer", {name: name for name in diffusion.RENDERERS}, type=str)  # type: ignore[misc]
ControlStyle = Enum("ControlStyle", {name: name for name in diffusion.CONTROL_STYLES}, type=str)  # type: ignore[misc]

# The diffusers renderer's options (animate and reenact): None where not given, so that one
# given without --renderer diffusers is an error rather than silently ignored.
_DIFFUSION_OPTIONS: dict[str, Any] = {
    "strength": Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0, show_default=False,
        help="--renderer diffusers: how far the face may move from the geometric frame (img2img strength; "
             "default 0.3).")],
    "steps": Annotated[Optional[int], typer.Option(
        min=1, show_default=False, help="--renderer diffusers: schedule steps; strength x steps of them run "
                                        "(default 20).")],
    "device": Annotated[Optional[str], typer.Option(
        show_default=False, help="--renderer diffusers: auto (CUDA in fp16 where present, else the CPU), cpu, "
                                 "cuda or cuda:N (default auto).")],
    "control_style": Annotated[Optional[ControlStyle], typer.Option(
        show_default=False, help="--renderer diffusers: how the mesh is drawn for the ControlNet, as it was "
        "trained: " + "; ".join(f"{k}: {v}" for k, v in diffusion.CONTROL_STYLES.items())
        + " (default mediapipe_face; its weights: <model folder>/diffusion/controlnet-STYLE).")],
    "refine_every": Annotated[Optional[int], typer.Option(
        min=1, show_default=False, help="--renderer diffusers: refine every Nth frame; the frames between carry "
                                        "its refinement along the mesh's motion (default 1).")],
}
_RENDERER_OPTIONS: dict[str, tuple[Any, Any]] = {
    "renderer": (Annotated[Renderer, typer.Option(
        help="geometric (the mesh warp, fast on a CPU) or diffusers (the face refined by your Stable Diffusion "
             "1.5 + ControlNet weights; docs/backends.md).")], Renderer.geometric),
    **{name: (annotation, None) for name, annotation in _DIFFUSION_OPTIONS.items()},
    "model_dir": (ModelDir, None),
}


def renderer_options(func: Callable[..., None]) -> Callable[..., None]:
    """Give a command the renderer's options (before its ``**shared``, where they arrive)."""
    signature = inspect.signature(func, eval_str=True)
    params = list(signature.parameters.values())
    params[-1:-1] = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                     for name, (annotation, default) in _RENDERER_OPTIONS.items()]
    func.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return func


def diffusion_options(values: dict[str, Any]) -> diffusion.DiffusionOptions | None:
    """The diffusers renderer's settings (None: the geometric renderer), checked before any file:
    weights missing or no CUDA for --device cuda is one line and exit 2."""
    model_files.use_model_dir(values["model_dir"])
    given = {name: values[name] for name in _DIFFUSION_OPTIONS if values[name] is not None}
    if Renderer(values["renderer"]) is Renderer.geometric:
        if given:
            raise UsageError(f"--{next(iter(given)).replace('_', '-')} needs --renderer diffusers")
        return None
    if "control_style" in given:
        given["control_style"] = ControlStyle(given["control_style"]).value
    options = diffusion.DiffusionOptions(seed=values["seed"], **given)
    diffusion.require(options)
    return options


@common.batch_command
@renderer_options
def animate(
    ctx: typer.Context,
    paths: Annotated[Optional[list[str]], typer.Argument(
        help="Portrait images or folders of them, then one audio file (any format ffmpeg reads).",
        show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="The video (.mp4) for one portrait, else a folder "
        "(default: <portrait>_<audio>.mp4 next to each portrait).", show_default=False)] = None,
    transcript: Annotated[Optional[str], typer.Option(help="What is said: forced alignment, more accurate "
                                                      "than phone recognition.", show_default=False)] = None,
    transcript_file: Annotated[Optional[Path], typer.Option(help="The transcript from a text file.",
                                                            dir_okay=False, show_default=False)] = None,
    expression: Annotated[Expression, typer.Option(help="Emotion shown while talking.")] = Expression.neutral,
    intensity: Annotated[float, typer.Option(min=0.0, max=1.0, help="Strength of the expression (0-1).")] = 0.7,
    head_motion: Annotated[float, typer.Option(min=0.0, max=3.0, help="Scale of head motion; 0 keeps the "
                                               "head still.")] = 1.0,
    blink_rate: Annotated[float, typer.Option(min=0.0, max=60.0, help="Blinks per minute.")] = 17.0,
    seed: Annotated[int, typer.Option(help="Seed of the random parts of head motion, blinks and gaze (and of "
                                      "--renderer diffusers' noise).")] = 0,
    fps: Annotated[float, typer.Option(min=1.0, max=120.0, help="Frames per second of the video.")] = 25.0,
    crop: Annotated[bool, typer.Option(help="Crop a square around the face (--size) instead of the "
                                       "portrait's own size.")] = False,
    size: Annotated[int, typer.Option(min=64, max=4096, help="Side of the --crop output, px (even).")] = 512,
    face_id: Annotated[Optional[int], typer.Option(help="Which face to animate (ids as facecli landmarks gives "
                                                   "them); default: the largest.", show_default=False)] = None,
    livelink: Annotated[bool, typer.Option(help="Also write <out>.livelink.csv (Live Link Face layout).")] = False,
    cues: Annotated[Optional[Path], typer.Option(help="Also write mouth cues in Rhubarb Lip Sync's shapes: a "
                                                 ".json or .tsv path (several videos: next to each).",
                                                 dir_okay=False, show_default=False)] = None,
    motion_only: Annotated[bool, typer.Option(help="Write only the motion (and --livelink/--cues), no video.")] = False,
    jobs: Annotated[Optional[Path], typer.Option(help="CSV of portrait,audio,output[,transcript] rows (paths "
                                                 "relative to the CSV's folder).", dir_okay=False,
                                                 show_default=False)] = None,
    **shared: Any,
) -> None:
    """A lip-synced talking portrait from an image and speech -> MP4 + <out>.motion.parquet.

    Example: facecli animate portrait.png speech.wav -o out.mp4
    """
    values = common.command_values(ctx, dict(locals()))
    if not values["crop"]:
        common.refuse_unused(ctx, values, ("size",), "--crop")
    text = _transcript(values["transcript"], values["transcript_file"])
    settings = {k: values[k] for k in ("fps", "intensity", "head_motion", "blink_rate", "seed", "crop", "size",
                                       "face_id", "motion_only", "livelink")}
    settings["expression"] = Expression(values["expression"]).value
    settings["diffusion"] = diffusion_options(values)
    if values["jobs"]:
        pairs.refuse_with_jobs(values, ("paths", "output", "transcript", "transcript_file"))
        rows = pairs.job_rows(values["jobs"], ("portrait", "audio", "output", "transcript"))
    else:
        rows = [(*row[:3], text) for row in pairs.argument_rows(
            values["paths"], values["output"], values["recursive"], values["glob"], ("portrait", "audio file"))]
    cues_path = values["cues"]
    job_list = []
    for portrait, audio, video, row_text in rows:
        cue_file = None
        if cues_path is not None:
            cue_file = str(cues_path if len(rows) == 1 else video.with_name(f"{video.stem}.cues{cues_path.suffix}"))
        options = AnimateOptions(audio=str(audio), transcript=row_text, cues=cue_file, **settings)
        marker = motion_path(video)
        job_list.append(Job(portrait, marker if options.motion_only else video, None, animate_file, options, marker,
                            (Path(audio),)))
    common.execute_pairs(values, job_list)


def _transcript(text: str | None, path: Path | None) -> str | None:
    if text is not None and path is not None:
        raise UsageError("give --transcript or --transcript-file, not both")
    if path is None:
        return text
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the transcript ({common.reason(exc)}); give a UTF-8 text file", path) from exc
