"""``facecli reenact``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..batch import Job
from ..retarget import PARTS
from ..stages.animate import motion_path
from ..stages.reenact import LENGTHS, ReenactOptions, reenact_file
from . import common, pairs
from .animate import diffusion_options, renderer_options


@common.batch_command
@renderer_options
def reenact(
    ctx: typer.Context,
    paths: Annotated[Optional[list[str]], typer.Argument(
        help="Source portraits (images or videos, or folders of them), then the driving video or its "
             "landmarks file.", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="The video (.mp4) for one source, else a folder "
        "(default: <source>_<driving>.mp4 next to each source).", show_default=False)] = None,
    parts: Annotated[str, typer.Option(help=f"What to transfer: a comma-separated subset of {','.join(PARTS)}.")]
        = ",".join(PARTS),
    expression_scale: Annotated[float, typer.Option(min=0.0, max=3.0, help="Scale of the face's motion.")] = 1.0,
    pose_scale: Annotated[float, typer.Option(min=0.0, max=3.0, help="Scale of the head's turns.")] = 1.0,
    absolute: Annotated[bool, typer.Option(help="Take the driver's shape and pose as they are (same person); "
                                           "default: its motion relative to the reference frame.")] = False,
    ref_frame: Annotated[Optional[int], typer.Option(min=0, help="Driving frame (0-based) the motion is measured "
                                                     "from (default: the track's most neutral).",
                                                     show_default=False)] = None,
    driving_face_id: Annotated[Optional[int], typer.Option(help="Driving track (default: the longest).",
                                                           show_default=False)] = None,
    source_face_id: Annotated[Optional[int], typer.Option(help="Source face (default: the largest).",
                                                          show_default=False)] = None,
    length: Annotated[Optional[str], typer.Option(help=f"A source video of another length: {'|'.join(LENGTHS)}.",
                                                  show_default=False)] = None,
    crop: Annotated[bool, typer.Option(help="Crop a square around the face (--size).")] = False,
    size: Annotated[int, typer.Option(min=64, max=4096, help="Side of the --crop output, px (even).")] = 512,
    livelink: Annotated[bool, typer.Option(help="Also write <out>.livelink.csv (Live Link Face layout).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of --renderer diffusers' noise.")] = 0,
    jobs: Annotated[Optional[Path], typer.Option(help="CSV of source,driving,output rows (paths relative to the "
                                                 "CSV's folder).", dir_okay=False, show_default=False)] = None,
    **shared: Any,
) -> None:
    """A portrait (or video) driven by the face in a driving video -> MP4 + <out>.motion.parquet.

    Example: facecli reenact portrait.png driving.mp4 -o out.mp4
    """
    values = common.command_values(ctx, dict(locals()))
    if not values["crop"]:
        common.refuse_unused(ctx, values, ("size",), "--crop")
    chosen = tuple(p.strip() for p in values["parts"].split(",") if p.strip())
    settings = {k: values[k] for k in ("expression_scale", "pose_scale", "absolute", "ref_frame", "driving_face_id",
                                       "source_face_id", "length", "crop", "size", "livelink")}
    settings["diffusion"] = diffusion_options(values)
    if values["jobs"]:
        pairs.refuse_with_jobs(values, ("paths", "output"))
        rows = pairs.job_rows(values["jobs"], ("source", "driving", "output"))
    else:
        rows = pairs.argument_rows(values["paths"], values["output"], values["recursive"], values["glob"],
                                   ("source", "driving video"), keep_video_sources=True)
    job_list = []
    for source, driving, video, _ in rows:
        options = ReenactOptions(driving=str(driving), parts=chosen, **settings)
        job_list.append(Job(source, video, None, reenact_file, options, motion_path(video), (Path(driving),)))
    common.execute_pairs(values, job_list)
