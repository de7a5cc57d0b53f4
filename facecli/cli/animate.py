"""``facecli animate``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..batch import Job
from ..errors import UsageError
from ..motion import EXPRESSIONS
from ..stages.animate import AnimateOptions, animate_file, motion_path
from . import common, pairs

Expression = Enum("Expression", {name: name for name in EXPRESSIONS}, type=str)  # type: ignore[misc]


@common.batch_command
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
    seed: Annotated[int, typer.Option(help="Seed of the random parts of head motion, blinks and gaze.")] = 0,
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
    text = _transcript(values["transcript"], values["transcript_file"])
    settings = {k: values[k] for k in ("fps", "intensity", "head_motion", "blink_rate", "seed", "crop", "size",
                                       "face_id", "motion_only", "livelink")}
    settings["expression"] = Expression(values["expression"]).value
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
        raise UsageError(f"cannot read the transcript ({exc}); give a UTF-8 text file", path) from exc
