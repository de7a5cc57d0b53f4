"""The batch spine every stage shares: inputs, resume, parallel workers, report.

One bad file never stops a batch: each file's failure becomes one line in the summary.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import formats, media
from .errors import FacecliError, UsageError
from .stages.common import FileStats


@dataclass(frozen=True)
class Job:
    """One input file of a stage: where it goes and how it is made."""

    source: Path
    output: Path
    preview: Path | None
    run: Callable[..., FileStats]  # run(source, output, options, preview, progress)
    options: Any


@dataclass
class FileResult:
    input: str
    output: str | None
    status: str  # "done", "skipped" or "failed"
    reason: str = ""
    frames: int = 0
    rows: int = 0
    faces: int = 0
    seconds: float = 0.0


@dataclass
class BatchSummary:
    results: list[FileResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def exit_code(self) -> int:
        return 1 if self.count("failed") else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "done": self.count("done"), "skipped": self.count("skipped"), "failed": self.count("failed"),
            "files": [asdict(r) for r in self.results],
        }


# What a folder scan picks up without --glob: images and the common video containers
# (anything else ffmpeg reads can still be named directly or matched with --glob).
VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .avi .mkv .webm .mpg .mpeg .wmv .flv .ts .mts .m2ts .3gp .ogv .mxf .dv .y4m".split()
)
MEDIA_SUFFIXES = media.IMAGE_SUFFIXES | VIDEO_SUFFIXES


def expand_inputs(paths: Iterable[str], recursive: bool = False, glob: str | None = None,
                  accept_stage: str | None = None) -> list[Path]:
    """Files named on the command line: paths, folders (``glob``, ``recursive``), or ``-`` for stdin.

    A folder yields its media files, or with ``accept_stage`` its stage files of that kind when
    it holds any. Missing paths are kept: they fail in the batch with their own line.
    """
    out: list[Path] = []
    for raw in paths:
        if raw == "-":
            out.extend(Path(line.strip()) for line in sys.stdin if line.strip())
            continue
        path = Path(raw)
        out.extend(_folder_inputs(path, recursive, glob, accept_stage) if path.is_dir() else [path])
    return list(dict.fromkeys(out))


def _folder_inputs(folder: Path, recursive: bool, glob: str | None, accept_stage: str | None) -> list[Path]:
    pattern = glob or "*"
    found = sorted(p for p in (folder.rglob(pattern) if recursive else folder.glob(pattern)) if p.is_file())
    found = [p for p in found if not p.name.startswith(".")]
    if glob:
        return found
    stage_files = [p for p in found if accept_stage and formats.stage_of(p) == accept_stage]
    if stage_files:
        return stage_files
    return [p for p in found if p.suffix.lower() in MEDIA_SUFFIXES and ".preview." not in p.name]


def is_complete(job: Job) -> bool:
    """The output exists, is complete, and was made from this source with these settings."""
    if not job.output.exists():
        return False
    try:
        header = formats.read_header(job.output)
        source = _media_of(job.source)
        same_source = (header["source"]["size_bytes"], header["source"]["sha256_quick"]) == \
            (source.stat().st_size, formats.quick_hash(source))
        wanted = json.loads(json.dumps(asdict(job.options)))  # as the header stores them
        return same_source and all(header["settings"].get(k) == v for k, v in wanted.items())
    except (FacecliError, KeyError, OSError):
        return False


def _media_of(source: Path) -> Path:
    if formats.stage_of(source):
        return Path(formats.read_header(source)["source"]["path"])
    return source


_progress_queue: Any = None


def _init_worker(queue: Any) -> None:
    global _progress_queue
    _progress_queue = queue
    # Ctrl-C goes to the parent, which then stops workers with SIGTERM; unwinding as an
    # interrupt lets each worker remove its partial outputs on the way out.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _report_frames(count: int) -> None:
    if _progress_queue is not None:
        _progress_queue.put(count)


def run_job(job: Job, progress: Callable[[int], None] | None = None, verbose: bool = False) -> FileResult:
    """Run one file; every error becomes a failed result with a one-line reason."""
    start = time.perf_counter()
    result = FileResult(str(job.source), str(job.output), "failed")
    try:
        stats = job.run(job.source, job.output, job.options, job.preview, progress or _report_frames)
        result.status, result.frames, result.rows, result.faces = "done", stats.frames, stats.rows, stats.faces
    except FacecliError as exc:
        result.reason = str(exc)
    except MemoryError:
        result.reason = f"{job.source}: out of memory; process it alone or lower FACECLI_MAX_PIXELS"
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop the batch
        result.reason = f"{job.source}: internal error {type(exc).__name__}: {exc} (please report this)"
        if verbose:
            traceback.print_exc()
    result.seconds = round(time.perf_counter() - start, 3)
    return result


def run_batch(jobs: list[Job], workers: int = 1, overwrite: bool = False, verbose: bool = False,
              on_result: Callable[[FileResult], None] | None = None,
              on_frames: Callable[[int], None] | None = None) -> BatchSummary:
    """Run every job (skipping complete outputs unless ``overwrite``), in parallel if ``workers`` > 1."""
    if workers < 1:
        raise UsageError("--workers must be >= 1")
    summary = BatchSummary()

    def record(result: FileResult) -> None:
        summary.results.append(result)
        if on_result:
            on_result(result)

    todo = []
    for job in jobs:
        if not overwrite and is_complete(job):
            record(FileResult(str(job.source), str(job.output), "skipped", "output is complete (--overwrite to redo)"))
        else:
            todo.append(job)
    if workers == 1 or len(todo) <= 1:
        for job in todo:
            record(run_job(job, on_frames, verbose))
        return summary
    _run_pool(todo, min(workers, len(todo)), verbose, record, on_frames)
    return summary


def _run_pool(jobs: list[Job], workers: int, verbose: bool, record: Callable[[FileResult], None],
              on_frames: Callable[[int], None] | None) -> None:
    # spawn, not fork: MediaPipe's graphs own threads that a fork would copy half-alive.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(queue,)) as pool:
        pending = {pool.submit(run_job, job, None, verbose): job for job in jobs}
        try:
            _collect(pending, queue, record, on_frames)
        except KeyboardInterrupt:
            for proc in list(pool._processes.values()):  # private, but the only handle on running workers
                proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _collect(pending: dict, queue: Any, record: Callable[[FileResult], None],
             on_frames: Callable[[int], None] | None) -> None:
    while pending:
        done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        _drain(queue, on_frames)
        for future in done:
            job = pending.pop(future)
            try:
                record(future.result())
            except Exception as exc:  # noqa: BLE001 - a crashed worker fails its file only
                record(FileResult(str(job.source), str(job.output), "failed",
                                  f"{job.source}: worker crashed ({type(exc).__name__}); run it alone with -v"))
    _drain(queue, on_frames)


def _drain(queue: Any, on_frames: Callable[[int], None] | None) -> None:
    while not queue.empty():
        count = queue.get_nowait()
        if on_frames:
            on_frames(count)
