"""``facecli classify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..stages.classify import ClassifyOptions, classify_file
from . import common
from .reconstruct import Focal, MaxFaces, MinScore, Smooth, landmark_options, media_of


@common.batch_command
def classify(
    ctx: typer.Context,
    inputs: common.Inputs,
    output: common.OutDir = None,
    format: common.Format = common.FileFormat.parquet,
    preview: common.Preview = None,
    explain: Annotated[bool, typer.Option(help="One sentence per face and frame: the key AUs, what they make, "
                                          "the conclusion.")] = False,
    segments: Annotated[bool, typer.Option(help="<stem>.segments.csv: expression episodes (onset, apex, offset) "
                                           "per face.")] = False,
    model: Annotated[Optional[Path], typer.Option(help="An ONNX expression classifier (with its YAML sidecar) for "
                                                  "the expressions; AUs stay geometric.", dir_okay=False,
                                                  show_default=False)] = None,
    focal: Focal = None,
    smooth: Smooth = False,
    min_score: MinScore = 0.5,
    max_faces: MaxFaces = 0,
    **shared: Any,
) -> None:
    """Action units, expressions, valence/arousal and gaze -> <stem>.classify.parquet.

    Inputs are media, or faces or landmarks files of them. Dominant expressions: --json, --report.
    """
    values = common.command_values(ctx, dict(locals()))
    opts = common.batch_options(values)
    stage_opts = ClassifyOptions(landmarks=landmark_options(values), explain=values["explain"], segments=values["segments"],
                                 model=str(values["model"].resolve()) if values["model"] else None)
    common.execute(opts, common.build_jobs(opts, "classify", "landmarks", classify_file, stage_opts, media_of))
