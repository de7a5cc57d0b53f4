"""Inputs of the commands that pair each source with one other file: ``animate`` (portrait +
speech) and ``reenact`` (source + driving video). Sources come from the command line (the
last path is the shared second input) or from a jobs CSV; outputs are videos."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from .. import media
from ..atomic import make_folder
from ..batch import VIDEO_SUFFIXES, expand_inputs
from ..errors import InputError, UsageError
from .common import reason

VIDEO_OUTPUTS = (".mp4", ".mov", ".mkv")

Row = tuple[Path, Path, Path, Optional[str]]  # source, second input, output video, optional extra column


def argument_rows(paths: list[str] | None, output: Path | None, recursive: bool, glob: str | None,
                  what: tuple[str, str], keep_video_sources: bool = False) -> list[Row]:
    """``SOURCE... OTHER``: one row per source; outputs ``-o x.mp4`` (one source) or
    ``<folder or the source's>/<source stem>_<other stem>.mp4``. ``what`` names both inputs in errors."""
    paths = paths or []
    if len(paths) < 2:
        raise UsageError(f"give one or more {what[0]}s, then one {what[1]} (or --jobs jobs.csv)")
    other = Path(paths[-1])
    named = {Path(p) for p in paths[:-1]}  # named files are kept: a wrong kind fails with its own line
    sources = [p for p in expand_inputs(paths[:-1], recursive, glob)
               if p in named or media.is_image_path(p) or (keep_video_sources and not _made_by_us(p, other))]
    if not sources:
        raise UsageError(f"no {what[0]} found; give files or folders of them")
    if output is not None and output.suffix.lower() in VIDEO_SUFFIXES - set(VIDEO_OUTPUTS):
        raise UsageError(f"write {'/'.join(VIDEO_OUTPUTS)} videos; {output.suffix} is not one", output)
    single_file = output is not None and output.suffix.lower() in VIDEO_OUTPUTS
    if single_file and len(sources) > 1:
        raise UsageError(f"{len(sources)} {what[0]}s cannot all write {output}; give a folder to -o", output)
    if output is not None and not single_file:
        make_folder(output)
    return [(src, other, output if single_file else (output or src.parent) / f"{src.stem}_{other.stem}.mp4", None)
            for src in sources]


def _made_by_us(path: Path, other: Path) -> bool:
    """A folder's own driving video, or an earlier output (it has a motion file beside it)."""
    return path.resolve() == other.resolve() or path.with_name(f"{path.stem}.motion.parquet").exists()


def refuse_with_jobs(values: dict, names: tuple[str, ...]) -> None:
    """--jobs names every input and output itself: the same given otherwise is a usage error."""
    given = [f"--{n.replace('_', '-')}" if n != "paths" else "positional paths" for n in names if values.get(n)]
    if given:
        raise UsageError(f"--jobs takes each job's inputs and outputs from the CSV; drop {', '.join(given)}")


def job_rows(jobs_csv: Path, columns: tuple[str, ...]) -> list[Row]:
    """Rows of ``columns`` (source, other, output[, extra]); a first row naming the columns is
    skipped; paths are relative to the CSV's folder; output folders are made once all rows are
    valid. Errors name the CSV's line."""
    layout = ",".join(columns[:3]) + (f"[,{columns[3]}]" if len(columns) > 3 else "")
    try:
        with jobs_csv.open(newline="", encoding="utf-8-sig") as fh:  # -sig: spreadsheets' byte-order mark
            reader = csv.reader(fh)
            table = [(reader.line_num, r) for r in reader if any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the jobs file ({reason(exc)}); give a CSV of {layout} rows", jobs_csv) from exc
    if table and table[0][1][0].strip().lower() == columns[0]:
        table = table[1:]
    rows = []
    for line, cells in table:
        if not 3 <= len(cells) <= len(columns):
            raise UsageError(f"line {line} has {len(cells)} columns; need {layout}", jobs_csv)
        source, other, video = (jobs_csv.parent / cells[i].strip() for i in range(3))
        if video.suffix.lower() not in VIDEO_OUTPUTS:
            raise UsageError(f"line {line}: the output must be a {'/'.join(VIDEO_OUTPUTS)} file", jobs_csv)
        rows.append((source, other, video, (cells[3].strip() or None) if len(cells) > 3 else None))
    if not rows:
        raise UsageError("the jobs file has no rows", jobs_csv)
    for _, _, video, _ in rows:
        make_folder(video.parent)
    return rows
