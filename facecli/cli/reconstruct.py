"""``facecli reconstruct``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .. import formats
from ..stages.detect import DetectOptions
from ..stages.landmarks import LandmarkOptions, resolve_source
from ..stages.reconstruct import MESH_FORMATS, ReconstructOptions, reconstruct_file
from . import common


# Options of the stages that run the landmarks themselves (reconstruct, classify).
Focal = Annotated[Optional[float], typer.Option(min=1.0, show_default=False,
                                                help="Camera focal length, px (default: max(width, height)).")]
Smooth = Annotated[bool, typer.Option(help="One Euro filter on the landmarks first.")]
MinScore = Annotated[float, typer.Option(min=0.0, max=1.0, help="Drop weaker detections (0-1).")]
MaxFaces = Annotated[int, typer.Option(min=0, help="At most this many faces per frame; 0 = no limit.")]


def landmark_options(values: dict[str, Any]) -> LandmarkOptions:
    """The landmarks such a stage runs: still images mirror-averaged (less left/right bias)."""
    return LandmarkOptions(detect=DetectOptions(min_score=values["min_score"], max_faces=values["max_faces"]),
                           smooth=values["smooth"], focal_px=values["focal"], mirror_average=True)


def media_of(path: Path) -> Path:
    """The media a stage input stands for (itself, or a faces or landmarks file's source)."""
    return resolve_source(path, formats.stage_of(path) or "faces")[0]


@common.batch_command
def reconstruct(
    ctx: typer.Context,
    inputs: common.Inputs,
    output: common.OutDir = None,
    format: common.Format = common.FileFormat.parquet,
    preview: common.Preview = None,
    meshes: Annotated[Optional[str], typer.Option(help=f"Also write meshes: {', '.join(MESH_FORMATS)} (obj/ply: "
                                                  "<stem>.meshes/ with one file per face and frame; glb: "
                                                  "<stem>.face<ID>.glb, one morph target per frame).",
                                                  show_default=False)] = None,
    texture: Annotated[bool, typer.Option(help="Each face's texture (<stem>.face<ID>.texture.png) from its most "
                                          "frontal frame, with its identity mesh (<stem>.face<ID>.obj).")] = False,
    livelink: Annotated[bool, typer.Option(help="A Live Link Face CSV per face (<stem>.face<ID>.livelink.csv).")]
    = False,
    focal: Focal = None,
    smooth: Smooth = False,
    min_score: MinScore = 0.5,
    max_faces: MaxFaces = 0,
    **shared: Any,
) -> None:
    """Metric 3D faces, head pose and ARKit blendshapes -> <stem>.reconstruct.parquet.

    Inputs are media, or faces or landmarks files of them (landmarks files are used as they are).
    """
    values = common.command_values(ctx, dict(locals()))
    opts = common.batch_options(values)
    stage_opts = ReconstructOptions(landmarks=landmark_options(values), meshes=values["meshes"], texture=values["texture"],
                                    livelink=values["livelink"])
    common.execute(opts, common.build_jobs(opts, "reconstruct", "landmarks", reconstruct_file, stage_opts, media_of))
