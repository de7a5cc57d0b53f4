"""What every stage command shares: inputs, outputs, config, progress and the summary."""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .. import backends, formats, media
from ..atomic import atomic_output, make_folder
from ..batch import MEDIA_SUFFIXES, BatchSummary, Executor, FileResult, Job, LocalExecutor, expand_inputs, run_batch
from ..errors import OutputError, UsageError

console = Console(stderr=True, soft_wrap=True)  # one error, one line: never wrapped


class FileFormat(str, Enum):
    parquet = "parquet"
    csv = "csv"


class ExecutorKind(str, Enum):
    local = "local"
    ray = "ray"


Inputs = Annotated[list[str], typer.Argument(help="Media files, folders, stage files, or - to read paths from stdin.",
                                             show_default=False)]
OutDir = Annotated[Optional[Path], typer.Option("--output", "-o", help="Output folder (default: next to each input).", show_default=False,
                                                file_okay=False)]
Format = Annotated[FileFormat, typer.Option("--format", help="parquet, or CSV with OpenFace 2.0 column names.")]
Preview = Annotated[Optional[Path], typer.Option(
    "--preview", help="Draw the result: a .png/.mp4 path for one input, else a folder.")]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Look into sub-folders of folder inputs.")]
Glob = Annotated[Optional[str], typer.Option("--glob", help="Which files of folder inputs, e.g. '*.mp4'.")]
Workers = Annotated[Optional[int], typer.Option(
    "--workers", "-j", min=1, show_default=False,
    help="Files processed in parallel (default: 1; with --executor ray, what the cluster's CPUs allow).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Redo files whose output is already complete.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary table.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Tracebacks for internal errors.")]
Report = Annotated[Optional[Path], typer.Option("--report", help="Write a JSON report of every file here.",
                                                dir_okay=False)]
JsonOut = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary to stdout.")]
ExecutorOption = Annotated[ExecutorKind, typer.Option(
    "--executor", help="local: processes on this machine; ray: one Ray task per file, on a cluster or here "
    "(pip install 'facecli\\[ray]'; docs/scaling.md).")]
Address = Annotated[Optional[str], typer.Option(
    "--address", show_default=False, help="Ray: the cluster, 'auto' (one started here with `ray start`) or "
    "ray://HOST:10001 (default: start Ray on this machine).")]
CpusPerTask = Annotated[Optional[int], typer.Option(
    "--cpus-per-task", min=1, show_default=False, help="Ray: cores each file's task reserves and its thread "
    "pools use (default: 1).")]
Retries = Annotated[Optional[int], typer.Option(
    "--retries", min=0, show_default=False, help="Ray: reruns of a file whose worker died (default: 3).")]
ChunkSeconds = Annotated[Optional[float], typer.Option(
    "--chunk-seconds", min=1.0, show_default=False, help="Ray, detect and landmarks: split each video longer than "
    "twice this into parts that start at shot cuts, processed in parallel and merged into one file.")]
Config = Annotated[Optional[Path], typer.Option("--config", help="YAML file with the same keys as the options; "
                                                "options given on the command line win.", dir_okay=False)]


_SHARED_OPTIONS = {  # name: (annotation, default) of the options every batch command takes
    "recursive": (Recursive, False), "glob": (Glob, None), "workers": (Workers, None), "overwrite": (Overwrite, False),
    "quiet": (Quiet, False), "verbose": (Verbose, False), "report": (Report, None), "json": (JsonOut, False),
    "executor": (ExecutorOption, ExecutorKind.local), "address": (Address, None), "cpus_per_task": (CpusPerTask, None),
    "retries": (Retries, None), "chunk_seconds": (ChunkSeconds, None), "config": (Config, None),
}


def batch_command(func: Callable[..., None]) -> Callable[..., None]:
    """Give a command the options every batch command shares: Typer sees them in the command's
    signature in place of its ``**shared`` parameter, and they arrive in ``shared``."""
    signature = inspect.signature(func, eval_str=True)  # evaluated: Typer reads the options' metadata there
    params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
               for name, (annotation, default) in _SHARED_OPTIONS.items()]
    func.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return func


def refuse_unused(ctx: typer.Context, values: dict[str, Any], names: tuple[str, ...], needs: str) -> None:
    """Options that act only with ``needs``: set without it, a usage error, not silently ignored."""
    defaults = {p.name: p.default for p in ctx.command.params}
    given = [f"--{n.replace('_', '-')}" for n in names if values[n] != defaults[n]]
    if given:
        raise UsageError(f"{', '.join(given)} only {'acts' if len(given) == 1 else 'act'} with {needs}; "
                         f"add {needs} or drop {'it' if len(given) == 1 else 'them'}")


def command_values(ctx: typer.Context, local_names: dict[str, Any]) -> dict[str, Any]:
    """A batch command's options, its own and the shared ones, with ``--config`` applied."""
    values = {k: v for k, v in local_names.items() if k not in ("ctx", "shared")}
    return apply_config(ctx, {**values, **local_names.get("shared", {})})


@dataclass
class BatchOptions:
    inputs: list[str]
    output: Path | None
    format: FileFormat
    preview: Path | None
    recursive: bool
    glob: str | None
    workers: int | None
    overwrite: bool
    quiet: bool
    verbose: bool
    report: Path | None
    json: bool
    executor: ExecutorKind
    address: str | None
    cpus_per_task: int | None
    retries: int | None
    chunk_seconds: float | None


def apply_config(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """Fill options not given on the command line from ``--config`` (YAML, safe_load)."""
    path = values.get("config")
    if not path:
        return values
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())  # YAML errors span lines: one error, one line
        raise UsageError(f"cannot read config ({detail}); give a YAML file of option: value lines", path) from exc
    if not isinstance(loaded, dict):
        raise UsageError("config must be a mapping of option: value", path)
    params = {p.name: p for p in ctx.command.params}
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        if name not in params or name == "config":
            raise UsageError(f"unknown option {key!r} in config; see --help for the names", path)
        if getattr(ctx.get_parameter_source(name), "name", "") != "COMMANDLINE":
            values[name] = _convert(params[name], value, ctx, path)
    return values


def _convert(param: Any, value: Any, ctx: typer.Context, config: Path) -> Any:
    """A config value checked and converted like the same option on the command line."""
    if value is None:
        raise UsageError(f"no value for {param.name!r}; give one or remove the line", config)
    if isinstance(value, bool) and not getattr(param, "is_flag", False):  # YAML's true is 1 to a number
        raise UsageError(f"bad value for {param.name!r}: {str(value).lower()} is a yes/no, this option takes "
                         "a value; see --help", config)
    try:
        return param.process_value(ctx, value)
    except Exception as exc:  # noqa: BLE001 - click's BadParameter and friends
        raise UsageError(f"bad value for {param.name!r}: {exc}", config) from exc


def check_backends(**stage_names: str) -> None:
    """UsageError for a backend the CLI does not offer (test doubles are Python-only)."""
    for stage, name in stage_names.items():
        backends.check_name(stage, name, hidden=False)


def batch_options(values: dict[str, Any]) -> BatchOptions:
    return BatchOptions(**{k: values[k] for k in BatchOptions.__dataclass_fields__})


def preview_path(opts: BatchOptions, source: Path, media_path: Path, stage: str, single: bool) -> Path | None:
    if opts.preview is None:
        return None
    suffix = ".png" if media.is_image_path(media_path) else ".mp4"
    named = opts.preview.suffix.lower()
    if named in MEDIA_SUFFIXES and not opts.preview.is_dir():  # a file was meant (a folder may be run.v2)
        if not single:
            raise UsageError("several inputs make several previews: give --preview a folder", opts.preview)
        if named != suffix:
            raise UsageError(f"a preview of {source.name} is a {suffix} file, not {opts.preview.suffix}", opts.preview)
        return opts.preview
    stem = formats.output_path(source, None, stage, "x").name.removesuffix(".x")
    return opts.preview / f"{stem}.preview{suffix}"


def reason(exc: Exception) -> str:
    """Why a file could not be read, without the path the message names already."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def build_jobs(opts: BatchOptions, stage: str, accept_stage: str | None, run: Callable[..., Any],
               options: Any, media_of: Callable[[Path], Path]) -> list[Job]:
    media.max_pixels()  # a bad FACECLI_MAX_PIXELS is a usage error, before any file
    sources = expand_inputs(opts.inputs, opts.recursive, opts.glob, accept_stage)
    if not sources:
        raise UsageError("no input files found; give media files, folders or - for stdin")
    if opts.output is not None:
        make_folder(opts.output)
    single = len(sources) == 1
    jobs = [
        Job(src, formats.output_path(src, opts.output, stage, opts.format.value),
            preview_path(opts, src, _safe_media(media_of, src), stage, single), run, options)
        for src in sources
    ]
    refuse_collisions(jobs)
    return jobs


def refuse_collisions(jobs: list[Job]) -> None:
    """Two jobs must never write one file (a/face.png and b/face.png into one -o folder), and
    no job may write over a file that a job reads."""
    inputs = {p.resolve(): p for job in jobs for p in (job.source, *job.extra_inputs)}
    seen: dict[Path, Job] = {}
    for job in jobs:
        for target in job.targets():
            key = target.resolve()
            if key in inputs:
                raise UsageError(f"{job.source} would write over the input {inputs[key]}; choose another -o")
            other = seen.setdefault(key, job)
            if other is not job:
                raise UsageError(f"{other.source} and {job.source} would both write {target}; rename one, "
                                 "or process them into different -o folders")


def _safe_media(media_of: Callable[[Path], Path], source: Path) -> Path:
    try:
        return media_of(source)
    except Exception:  # noqa: BLE001 - a broken input fails later, in the batch, with its own line
        return source


def make_executor(opts: BatchOptions) -> Executor:
    """Where the batch runs: this machine's processes, or Ray tasks (facecli.executors)."""
    ray_options = {"address": opts.address, "cpus_per_task": opts.cpus_per_task, "retries": opts.retries,
                   "chunk_seconds": opts.chunk_seconds}
    given = {name: value for name, value in ray_options.items() if value is not None}
    if opts.executor is ExecutorKind.local:
        if given:
            names = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UsageError(f"{names} only apply with --executor ray")
        return LocalExecutor(opts.workers or 1, opts.verbose)
    from ..executors import RayExecutor  # Ray itself is imported only when the batch starts

    return RayExecutor(**given, max_in_flight=opts.workers, verbose=opts.verbose)


def execute(opts: BatchOptions, jobs: list[Job]) -> None:
    """Run the batch with progress, print the summary, write the report; exit 0 or 1."""
    if opts.report:  # a report that cannot be written is found before the batch's hours, not after
        _check_report_folder(opts.report)
    executor = make_executor(opts)
    try:
        summary = _run_with_progress(opts, jobs, executor) if not (opts.quiet or opts.json) else \
            run_batch(jobs, overwrite=opts.overwrite, executor=executor)
    except KeyboardInterrupt:
        console.print("interrupted: finished outputs are kept, partial ones were removed", markup=False)
        raise typer.Exit(130) from None
    if not opts.quiet and not opts.json:
        _print_summary(summary)
    elif not opts.json:
        for r in summary.results:
            if r.status == "failed":
                console.print(f"failed: {r.reason}", markup=False, highlight=False)
    report = summary.as_dict()
    if opts.json:
        typer.echo(json.dumps(report))
    if opts.report:
        with atomic_output(opts.report) as tmp:
            tmp.write_text(json.dumps(report, indent=2))
    raise typer.Exit(summary.exit_code)


def _check_report_folder(report: Path) -> None:
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
        problem = None if os.access(report.parent, os.W_OK) else "permission denied"
    except OSError as exc:
        problem = exc.strerror
    if problem:
        raise OutputError(f"cannot write the report there ({problem}); choose another --report", report)


def execute_pairs(values: dict[str, Any], jobs: list[Job]) -> None:
    """``execute`` for commands whose jobs name their own outputs (animate, reenact)."""
    refuse_collisions(jobs)
    values = {**values, "inputs": [], "output": None, "preview": None, "format": FileFormat.parquet}
    execute(batch_options(values), jobs)


def _run_with_progress(opts: BatchOptions, jobs: list[Job], executor: Executor) -> BatchSummary:
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        files = progress.add_task("files", total=len(jobs))
        # No frame total: probing every input first would cost minutes on a folder of 10,000 videos.
        frames = progress.add_task("frames", total=None)

        def on_result(result: FileResult) -> None:
            progress.advance(files)
            if result.status == "failed":
                progress.console.print(f"failed: {result.reason}", markup=False, highlight=False)

        return run_batch(jobs, overwrite=opts.overwrite, on_result=on_result,
                         on_frames=lambda n: progress.advance(frames, n), executor=executor)


def _print_summary(summary: BatchSummary) -> None:
    table = Table(title=f"{summary.count('done')} done, {summary.count('skipped')} skipped, "
                        f"{summary.count('failed')} failed", title_justify="left")
    for column in ("input", "status", "frames", "faces", "seconds", "output / reason"):
        table.add_column(column, overflow="fold")
    style = {"done": "green", "skipped": "yellow", "failed": "red"}
    for r in summary.results:
        table.add_row(Text(Path(r.input).name), Text(r.status, style=style[r.status]), str(r.frames), str(r.faces),
                      f"{r.seconds:.1f}", Text(r.reason if r.status != "done" else str(r.output)))
    console.print(table)
