"""``facecli stabilize``."""

from __future__ import annotations

import dataclasses
import json as json_module
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import UsageError
from ..stages.stabilize import (BORDERS, MIN_TRACK_S, MODES, TEMPLATES, TRACKS_INDEX, StabilizeOptions, stabilize_file,
                               stabilized_path)
from ..stages.stabilize_meshes import stabilize_mesh_folder
from . import common


@common.batch_command
def stabilize(
    ctx: typer.Context,
    inputs: common.Inputs,
    output: common.OutDir = None,
    mode: Annotated[str, typer.Option(help=f"{' or '.join(MODES)}: an aligned face crop, or the whole frame "
                                      "following the face.")] = "crop",
    size: Annotated[int, typer.Option(min=64, max=4096, help="Side of the crop, px (even).")] = 512,
    template: Annotated[str, typer.Option(help=f"Crop layout: {', '.join(TEMPLATES)}.")] = "ffhq",
    margin: Annotated[float, typer.Option(min=0.0, max=2.0, help="Extra border around the layout, as a "
                                          "fraction of the side.")] = 0.0,
    smooth: Annotated[float, typer.Option(min=0.0, max=5.0, help="Smoothing of the motion, s (Gaussian "
                                          "sigma, without lag); 0: none.")] = 0.04,
    keep_scale: Annotated[bool, typer.Option(help="Let the face keep its own size changes.")] = False,
    keep_rotation: Annotated[bool, typer.Option(help="Let the face keep its own roll.")] = False,
    border: Annotated[str, typer.Option(help=f"--mode frame: {', '.join(BORDERS)} where the moved frame "
                                        "leaves the picture.")] = "blur",
    face_id: Annotated[Optional[int], typer.Option(help="The face to follow, by its landmarks id (default: "
                                                   "one face followed while it lasts, from the most confident "
                                                   "detection; only it is fitted).", show_default=False)] = None,
    all_faces: Annotated[bool, typer.Option("--all-faces", help="One output per face track, over its own frames: "
                                            "<stem>.face<ID>.stabilized.mp4 + .stabilize.parquet, and the index "
                                            f"<stem>.tracks.stabilize.parquet (tracks under {MIN_TRACK_S} s are "
                                            "skipped).")] = False,
    mesh: Annotated[bool, typer.Option("--mesh", help="Mesh mode: the input is a folder of OBJ/PLY meshes of one "
                                       "topology; -o gets them aligned, and transforms.csv.")] = False,
    ref: Annotated[Optional[str], typer.Option(help="--mesh: the reference mesh's file name (default: the first).",
                                               show_default=False)] = None,
    weights: Annotated[Optional[Path], typer.Option(help="--mesh: a text file of one weight per vertex (default: "
                                                    "MediaPipe's rigid points, or estimated).", dir_okay=False,
                                                    show_default=False)] = None,
    sequence: Annotated[bool, typer.Option(help="--mesh: the meshes are a time sequence (natural name order): "
                                           "smooth the transforms along it.")] = False,
    **shared: Any,
) -> None:
    """Stabilized, aligned face videos -> <stem>.stabilized.mp4 + <stem>.stabilize.parquet (transforms).

    Inputs are videos, or landmarks files of them (their tracks are used as they are). --all-faces
    writes one such pair per face track instead.
    """
    values = common.command_values(ctx, dict(locals()))
    if values["mesh"]:
        _meshes(values)
        return
    common.refuse_unused(ctx, values, ("ref", "weights", "sequence"), "--mesh")
    if values["mode"] != "frame":
        common.refuse_unused(ctx, values, ("border",), "--mode frame")
    values["preview"], values["format"] = None, common.FileFormat.parquet
    opts = common.batch_options(values)
    stage_opts = StabilizeOptions(mode=values["mode"], size=values["size"], template=values["template"],
                                  margin=values["margin"], smooth_s=values["smooth"], keep_scale=values["keep_scale"],
                                  keep_rotation=values["keep_rotation"], border=values["border"],
                                  face_id=values["face_id"], all_faces=values["all_faces"])
    # --all-faces: the tracks are known only once a job runs, so its index is the job's output,
    # for resume and the collision check (each track's names derive from the index's stem).
    name = TRACKS_INDEX if stage_opts.all_faces else "stabilize"
    jobs = common.build_jobs(opts, name, "landmarks", stabilize_file, stage_opts, Path)
    if not stage_opts.all_faces:  # the video beside the transforms must be there too for a job to be done
        jobs = [dataclasses.replace(job, also_writes=(stabilized_path(job.output),)) for job in jobs]
    common.execute(opts, jobs)


def _meshes(values: dict) -> None:
    if len(values["inputs"]) != 1 or values["output"] is None:
        raise UsageError("--mesh takes one folder of meshes and -o OUTPUT_FOLDER")
    rows = stabilize_mesh_folder(values["inputs"][0], values["output"], values["ref"], values["weights"],
                                 values["sequence"])
    worst = max(t.residual_mm for _, t in rows)
    if values["json"]:
        typer.echo(json_module.dumps({"meshes": len(rows), "output": str(values["output"]), "max_residual": worst}))
    elif not values["quiet"]:
        common.console.print(f"{len(rows)} meshes aligned into {values['output']} (transforms.csv; largest "
                             f"residual {worst:.3g} in the meshes' units)", markup=False, highlight=False)
