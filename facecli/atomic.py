"""Atomic file writes: a killed run never leaves a file that looks complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_folder(folder: Path) -> None:
    """An output folder, made now; one that cannot be is a bad output (exit 1), named."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder ({exc.strerror}); choose another -o", folder) from exc


def remove_partials(final_path: Path) -> None:
    """Remove what ``atomic_output`` left beside ``final_path`` when its process was killed
    (SIGKILL, out of memory): only call it while nothing else writes that path."""
    final_path = Path(final_path)
    # (a video with audio is encoded first into <temporary name>.video.mp4)
    for leftover in final_path.parent.glob(f".{final_path.stem}.*.part{final_path.suffix}*"):
        leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(final_path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final_path``; rename it into place on success.

    The temporary name keeps the final suffix (tools such as ffmpeg pick the format
    from it) and starts with a dot, so globs for outputs never match it.
    """
    final_path = Path(final_path)
    try:
        final_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{final_path.stem}.", suffix=f".part{final_path.suffix}", dir=final_path.parent
        )
    except OSError as exc:
        raise OutputError(f"cannot write it in {final_path.parent} ({exc.strerror}); choose another place",
                          final_path) from exc
    os.close(fd)
    tmp_path = Path(tmp_name)
    os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs are shared like any file
    try:
        yield tmp_path
        os.replace(tmp_path, final_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
