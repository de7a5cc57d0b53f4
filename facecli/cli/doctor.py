"""``facecli doctor``: what can run here."""

from __future__ import annotations

import importlib.util
import platform
import sys

import typer
from rich.markup import escape
from rich.table import Table

from .. import __version__, backends, diffusion, media
from ..backends import models as model_files
from .common import console
from .models import ModelDir

# Bring-your-own-weights backends: missing is a choice, not a fault (docs/backends.md).
OPTIONAL = {"insightface", "insightface106", "fan", "fan3d"}


def doctor(model_dir: ModelDir = None) -> None:
    """List every stage's backends, whether each is usable here, and where it looks for weights."""
    model_files.use_model_dir(model_dir)
    table = Table(title=f"facecli {__version__} on Python {platform.python_version()} ({sys.platform})",
                  title_justify="left")
    for column in ("stage", "backend", "usable", "detail", "weights"):
        table.add_column(column, overflow="fold")
    rows = [row for row in backends.describe() if row.name != "fake"]  # the test double is not for users
    for row in rows:
        usable = "[green]yes[/]" if row.usable else "[yellow]optional[/]" if row.name in OPTIONAL else "[red]no[/]"
        table.add_row(row.stage, row.name, usable, escape(row.detail), escape(row.weights))
    onnx = importlib.util.find_spec("onnxruntime") is not None
    table.add_row("classify --model", "onnx", "[green]yes[/]" if onnx else "[yellow]optional[/]",
                  "onnxruntime" if onnx else escape("pip install 'facecli[onnx]'"), "PATH.onnx + PATH.yaml")
    for name, reason, where in diffusion.inventory():  # bring-your-own weights: optional too
        table.add_row("animate, reenact --renderer diffusers", name,
                      "[yellow]optional[/]" if reason else "[green]yes[/]", escape(reason or "found"), escape(where))
    console.print(table)
    console.print(f"model folder: {model_files.model_dir()} (--model-dir or ${model_files.ENV_VAR}; "
                  "facecli models list)", markup=False, highlight=False)
    try:
        console.print(f"ffmpeg: {media.ffmpeg_exe()} ({media.ffmpeg_version()})", markup=False, highlight=False)
        ffmpeg_works = True
    except Exception as exc:  # noqa: BLE001 - doctor reports, never fails on what it inspects
        console.print(f"ffmpeg: unusable ({exc})", markup=False, highlight=False)
        ffmpeg_works = False
    if not ffmpeg_works or not all(r.usable for r in rows if r.name not in OPTIONAL):
        raise typer.Exit(1)
