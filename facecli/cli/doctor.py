"""``facecli doctor``: what can run here."""

from __future__ import annotations

import importlib.util
import platform
import sys

import typer
from rich.table import Table

from .. import __version__, backends, media
from .common import console


def doctor() -> None:
    """List every stage's backends, whether each is usable here, and where it looks for weights."""
    table = Table(title=f"facecli {__version__} on Python {platform.python_version()} ({sys.platform})",
                  title_justify="left")
    for column in ("stage", "backend", "usable", "detail", "weights"):
        table.add_column(column, overflow="fold")
    rows = backends.describe()
    for row in rows:
        if row.name == "fake":
            continue  # the test double is not for users
        table.add_row(row.stage, row.name, "[green]yes[/]" if row.usable else "[red]no[/]", row.detail, row.weights)
    onnx = importlib.util.find_spec("onnxruntime") is not None
    table.add_row("classify --model", "onnx", "[green]yes[/]" if onnx else "[yellow]optional[/]",
                  "onnxruntime" if onnx else "pip install 'facecli[onnx]'", "PATH.onnx + PATH.yaml")
    console.print(table)
    try:
        console.print(f"ffmpeg: {media.ffmpeg_exe()}", markup=False, highlight=False)
    except Exception as exc:  # noqa: BLE001 - doctor reports, never fails on what it inspects
        console.print(f"ffmpeg: missing ({exc})", markup=False, highlight=False)
    if not all(r.usable for r in rows if r.name != "fake"):
        raise typer.Exit(1)
