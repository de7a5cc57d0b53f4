"""Stages that are planned but not built yet: each says so and exits 2."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import console

PLANNED = {
    "classify": "Action units and expressions, with an explanation.",
}


def planned_command(name: str):
    def command(args: Annotated[list[str] | None, typer.Argument(hidden=True)] = None) -> None:
        console.print(f"facecli {name}: not implemented yet (see the project's issues).", markup=False)
        raise typer.Exit(2)

    command.__doc__ = f"{PLANNED[name]} (not implemented yet)"
    return command
