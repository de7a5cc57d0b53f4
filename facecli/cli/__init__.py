"""The ``facecli`` command: a thin layer over the library, one file per command."""

from __future__ import annotations

import signal
import sys

import typer

from .. import __version__
from ..batch import raise_interrupt
from ..errors import FacecliError
from .common import console
from .animate import animate
from .classify import classify
from .detect import detect
from .doctor import doctor
from .landmarks import landmarks
from .models import app as models_app
from .reconstruct import reconstruct
from .reenact import reenact
from .stabilize import stabilize

app = typer.Typer(
    name="facecli", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Batch face video processing, offline on a CPU. Each stage reads media or an earlier stage's "
         "files and writes standardized files, so stages chain in shell scripts.",
)
app.command()(detect)
app.command()(landmarks)
app.command()(animate)
app.command()(reenact)
app.command()(stabilize)
app.command()(reconstruct)
app.command()(classify)
app.command()(doctor)
app.add_typer(models_app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"facecli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


def main() -> None:
    """Console entry point: facecli errors become one line, never a traceback."""
    signal.signal(signal.SIGTERM, raise_interrupt)  # timeout, schedulers: clean up as for Ctrl-C
    try:
        app()
    except FacecliError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - last resort: one line, never a traceback
        console.print(f"internal error {type(exc).__name__}: {exc} (please report this)", markup=False,
                      highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted: complete outputs are kept, partial ones were removed", markup=False)
        sys.exit(130)
