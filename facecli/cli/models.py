"""``facecli models``: the optional backends' weights (see docs/backends.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..backends import models as model_files
from .common import console

ModelDir = Annotated[Optional[Path], typer.Option(
    "--model-dir", file_okay=False, show_default=False,
    help=f"Folder of the optional backends' weights (default: ${model_files.ENV_VAR}, "
         f"else {model_files.DEFAULT_DIR}).")]

app = typer.Typer(name="models", no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                  help="Weights of the optional backends: where facecli looks, and the one command that downloads.")


@app.command("list")
def list_models(model_dir: ModelDir = None,
                checksums: Annotated[bool, typer.Option(help="Hash the files found (sha256).")] = True) -> None:
    """Every file the optional backends read, whether it is in the model folder, and its sha256."""
    model_files.use_model_dir(model_dir)
    table = Table(title=f"model folder: {model_files.model_dir()}", title_justify="left")
    for column in ("pack", "file", "for", "found", "checksum"):
        table.add_column(column, overflow="fold")
    for row in model_files.status(checksums):
        found = f"[green]{row.path.name}[/]" if row.path else "[red]missing[/]"
        table.add_row(row.pack, row.weights.name, row.weights.what, found, row.checksum)
    console.print(table)
    console.print(f"get a pack with: facecli models download NAME ({', '.join(model_files.PACKS)})",
                  markup=False, highlight=False)


@app.command()
def download(name: Annotated[str, typer.Argument(help=f"Pack: {', '.join(model_files.PACKS)}.", show_default=False)],
             model_dir: ModelDir = None) -> None:
    """Download a pack with its package's own downloader (the only facecli step that downloads)."""
    model_files.use_model_dir(model_dir)
    folder = model_files.download(name)
    typer.echo(f"{name}: {folder}")
