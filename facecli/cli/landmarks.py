"""``facecli landmarks``."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ..backends import models as model_files
from ..stages.detect import DetectOptions
from ..stages.landmarks import LandmarkOptions, landmarks_file, resolve_source
from . import common
from .models import ModelDir


@common.batch_command
def landmarks(
    ctx: typer.Context,
    inputs: common.Inputs,
    output: common.OutDir = None,
    format: common.Format = common.FileFormat.parquet,
    preview: common.Preview = None,
    backend: Annotated[str, typer.Option(help="Landmark backend (see facecli doctor).")] = "mediapipe",
    detector: Annotated[str, typer.Option(help="Detection backend used on keyframes.")] = "mediapipe",
    min_score: Annotated[float, typer.Option(min=0.0, max=1.0, help="Drop weaker detections (0-1).")] = 0.5,
    min_size: Annotated[Optional[float], typer.Option(
        min=1.0, show_default=False, help="Smallest face side looked for, px; smaller is slower "
        "(default: 40 for images; for videos 5% of the long side, at least 40).")] = None,
    max_faces: Annotated[int, typer.Option(min=0, help="At most this many faces per frame; 0 = no limit.")] = 0,
    detect_every: Annotated[int, typer.Option(min=1, help="Frames between detection scans while every face "
                                              "is tracked (shot cuts and lost faces rescan sooner).")] = 150,
    smooth: Annotated[bool, typer.Option(help="One Euro filter on every point (see docs/formats.md).")] = False,
    smooth_min_cutoff: Annotated[float, typer.Option(min=0.001, help="One Euro cut-off at rest, Hz.")] = 1.0,
    smooth_beta: Annotated[float, typer.Option(min=0.0, help="One Euro speed coefficient, 1/px: the cut-off rises by this many Hz per px/s of motion.")] = 0.05,
    focal: Annotated[Optional[float], typer.Option(min=1.0, show_default=False,
                                                   help="Camera focal length, px (default: max(width, height)).")] = None,
    mirror_average: Annotated[bool, typer.Option(help="Still images: average the mesh with its mirror image's "
                                                 "(cancels most of MediaPipe's left/right bias; 11 mesh fits a face).")] = False,
    model_dir: ModelDir = None,
    **shared: Any,
) -> None:
    """478-point landmarks, 68/5-point layouts and head pose -> <stem>.landmarks.parquet.

    Inputs are media, or faces files from `facecli detect` (their detections are reused).
    """
    values = common.command_values(ctx, dict(locals()))
    opts = common.batch_options(values)
    common.check_backends(landmarks=values["backend"], detect=values["detector"])
    stage_opts = LandmarkOptions(
        backend=values["backend"],
        detect=DetectOptions(backend=values["detector"], min_score=values["min_score"],
                             min_size=values["min_size"], max_faces=values["max_faces"]),
        detect_every=values["detect_every"], smooth=values["smooth"], smooth_min_cutoff=values["smooth_min_cutoff"],
        smooth_beta=values["smooth_beta"], focal_px=values["focal"], mirror_average=values["mirror_average"],
    )
    model_files.use_model_dir(values["model_dir"])
    model_files.require("landmarks", stage_opts.backend)
    model_files.require("detect", stage_opts.detect.backend)
    jobs = common.build_jobs(opts, "landmarks", "faces", landmarks_file, stage_opts, lambda p: resolve_source(p)[0])
    common.execute(opts, jobs)
