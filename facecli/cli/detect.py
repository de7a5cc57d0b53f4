"""``facecli detect``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..backends import models as model_files
from ..stages.detect import EMBED_BACKEND, MERGE_THRESHOLD, SCAN_EVERY, DetectOptions, detect_file
from . import common
from .models import ModelDir


@common.batch_command
def detect(
    ctx: typer.Context,
    inputs: common.Inputs,
    output: common.OutDir = None,
    format: common.Format = common.FileFormat.parquet,
    preview: common.Preview = None,
    backend: Annotated[str, typer.Option(help="Detection backend (see facecli doctor).")] = "mediapipe",
    min_score: Annotated[float, typer.Option(min=0.0, max=1.0, help="Drop weaker detections (0-1).")] = 0.5,
    min_size: Annotated[Optional[float], typer.Option(
        min=1.0, show_default=False, help="Smallest face side looked for, px; smaller is slower "
        "(default: 40 for images; for videos 5% of the long side, at least 40).")] = None,
    max_faces: Annotated[int, typer.Option(min=0, help="At most this many faces per frame; 0 = no limit.")] = 0,
    every: Annotated[int, typer.Option(min=1, help="Process every Nth frame.")] = 1,
    scan_every: Annotated[int, typer.Option(min=1, help="Video: processed frames between full detection scans; "
                                            "faces found are followed in between (1 scans every frame).")] = SCAN_EVERY,
    min_track: Annotated[int, typer.Option(min=1, max=10, help="Video: drop faces seen in fewer processed frames "
                                           "(1 keeps every detection).")] = 2,
    embed: Annotated[bool, typer.Option(help="Add a 512-d ArcFace identity vector per track (insightface's "
                                        "w600k_r50, see docs/backends.md).")] = False,
    merge_tracks: Annotated[bool, typer.Option(help="Give a track the id of an earlier shot's track of the same "
                                               "person, by ArcFace similarity (implies --embed).")] = False,
    merge_threshold: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Cosine similarity from which --merge-tracks takes two tracks for one person.",
    )] = MERGE_THRESHOLD,
    model_dir: ModelDir = None,
    **shared: Any,
) -> None:
    """Find faces in images and videos and track them across frames -> <stem>.faces.parquet."""
    values = common.command_values(ctx, dict(locals()))
    opts = common.batch_options(values)
    common.check_backends(detect=values["backend"])
    stage_opts = DetectOptions(backend=values["backend"], min_score=values["min_score"], min_size=values["min_size"],
                               max_faces=values["max_faces"], every=values["every"], scan_every=values["scan_every"],
                               min_track=values["min_track"], embed=values["embed"],
                               merge_tracks=values["merge_tracks"], merge_threshold=values["merge_threshold"])
    model_files.use_model_dir(values["model_dir"])
    model_files.require("detect", stage_opts.backend)
    if stage_opts.embeds:
        model_files.require("embed", EMBED_BACKEND)
    common.execute(opts, common.build_jobs(opts, "faces", None, detect_file, stage_opts, Path))
