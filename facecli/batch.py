"""The batch spine every stage shares: inputs, resume, parallel workers, report.

One bad file never stops a batch: each file's failure becomes one line in the summary.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import formats, media
from .atomic import remove_partials
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
    marker: Path | None = None  # the stage file whose header proves the job done (default: output)
    extra_inputs: tuple[Path, ...] = ()  # other files it reads (speech, a driving video)
    also_writes: tuple[Path, ...] = ()  # other outputs (stabilize's video): none may be missing when done

    def targets(self) -> list[Path]:
        return [p for p in (self.output, self.preview, self.marker, *self.also_writes) if p is not None]


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
    summary: dict[str, Any] = field(default_factory=dict)  # e.g. classify's dominant expression per track


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
    first_spelling: dict[Path, Path] = {}
    for path in out:  # one job per file, however it was spelled
        first_spelling.setdefault(path.resolve(), path)
    return list(first_spelling.values())


def _folder_inputs(folder: Path, recursive: bool, glob: str | None, accept_stage: str | None) -> list[Path]:
    pattern = glob or "*"
    found = sorted(p for p in (folder.rglob(pattern) if recursive else folder.glob(pattern)) if p.is_file())
    # hidden files and what hidden folders hold (.git, .cache, a run's own temporary files)
    found = [p for p in found if not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    if glob:
        return found
    media_files = [p for p in found if p.suffix.lower() in MEDIA_SUFFIXES and ".preview." not in p.name]
    if not accept_stage:
        return media_files
    # A stage file stands in for its media; media without one is processed from scratch.
    stage_files = [p for p in found if formats.stage_of(p) == accept_stage]
    covered = {formats.output_path(p, None, accept_stage, "x") for p in stage_files}
    return sorted(stage_files + [p for p in media_files
                                 if formats.output_path(p, None, accept_stage, "x") not in covered])


def is_complete(job: Job) -> bool:
    """The output exists, is complete, and was made from this source with these settings."""
    marker = job.marker or job.output
    if not all(p.exists() for p in (marker, job.output, *job.also_writes, *filter(None, [job.preview]))):
        return False
    try:
        header = formats.read_header(marker)
        same_input = header["input"]["sha256_quick"] == formats.quick_hash(job.source) and all(
            formats.quick_hash(Path(extra["path"])) == extra["sha256_quick"] for extra in header.get("extra_inputs", []))
        wanted = json.loads(json.dumps(asdict(job.options)))  # as the header stores them
        return same_input and all(header["settings"].get(k) == v for k, v in wanted.items())
    except (FacecliError, KeyError, OSError):
        return False


_progress_queue: Any = None


def _init_worker(queue: Any) -> None:
    global _progress_queue
    _progress_queue = queue
    # Ctrl-C goes to the parent, which then stops workers with SIGTERM; unwinding as an
    # interrupt lets each worker remove its partial outputs on the way out.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_worker)


def _exit_worker(signum: int, frame: Any) -> None:
    """A worker's SIGTERM (Ctrl-C in the parent, or a pool broken by another worker's death):
    unwind, so a job in hand removes its partial outputs, and leave quietly, where
    KeyboardInterrupt in an idle worker printed a traceback."""
    raise SystemExit(128 + signum)


def raise_interrupt(signum: int, frame: Any) -> None:
    """A SIGTERM handler: unwind exactly as Ctrl-C does, removing partial outputs."""
    raise KeyboardInterrupt


def _report_frames(count: int) -> None:
    if _progress_queue is not None:
        _progress_queue.put(count)


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}  # the output's disk, not facecli


def _unexpected_reason(job: Job, exc: Exception) -> str:
    """An error no stage turned into a FacecliError: a full or read-only disk met while writing
    (parquet, meshes) is named as such; anything else is facecli's fault."""
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return f"{job.source}: cannot write {job.output} ({os.strerror(exc.errno)}); free disk space or choose another -o"
    return f"{job.source}: internal error {type(exc).__name__}: {exc} (please report this)"


def run_job(job: Job, progress: Callable[[int], None] | None = None, verbose: bool = False) -> FileResult:
    """Run one file; every error becomes a failed result with a one-line reason."""
    start = time.perf_counter()
    result = FileResult(str(job.source), str(job.output), "failed")
    try:
        stats = job.run(job.source, job.output, job.options, job.preview, progress or _report_frames)
        result.status, result.frames, result.rows, result.faces = "done", stats.frames, stats.rows, stats.faces
        result.summary = stats.summary
    except FacecliError as exc:
        # Name the input even when the error is about another path (an -o folder, a media file).
        result.reason = str(exc) if str(exc).startswith(str(job.source)) else f"{job.source}: {exc}"
    except MemoryError:
        result.reason = f"{job.source}: out of memory; process it alone or lower FACECLI_MAX_PIXELS"
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop the batch
        result.reason = _unexpected_reason(job, exc)
        if verbose:
            traceback.print_exc()
    result.seconds = round(time.perf_counter() - start, 3)
    return result


class Executor(Protocol):
    """Where a batch's jobs run: each job's FileResult goes to ``record`` as it finishes, and
    frames processed to ``on_frames``. The local process pool and Ray (facecli.executors) are two."""

    def run(self, jobs: list[Job], record: Callable[[FileResult], None],
            on_frames: Callable[[int], None] | None) -> None: ...


@dataclass(frozen=True)
class LocalExecutor:
    """This machine: one job after the other, or ``workers`` processes in parallel."""

    workers: int = 1
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise UsageError("--workers must be >= 1")

    def run(self, jobs: list[Job], record: Callable[[FileResult], None],
            on_frames: Callable[[int], None] | None) -> None:
        if self.workers == 1 or len(jobs) <= 1:
            for job in jobs:
                record(run_job(job, on_frames, self.verbose))
        else:
            _run_pool(jobs, min(self.workers, len(jobs)), self.verbose, record, on_frames)


def worker_died(job: Job, times: str = "") -> FileResult:
    """The result of a job whose worker process died under it."""
    return FileResult(str(job.source), str(job.output), "failed",
                      f"{job.source}: the worker processing it died{times} (out of memory, a crash in a native "
                      "library or a lost machine); run it alone with -v")


def run_batch(jobs: list[Job], workers: int = 1, overwrite: bool = False, verbose: bool = False,
              on_result: Callable[[FileResult], None] | None = None,
              on_frames: Callable[[int], None] | None = None, executor: Executor | None = None) -> BatchSummary:
    """Run every job (skipping complete outputs unless ``overwrite``) on ``executor``, by default
    this machine with ``workers`` processes."""
    executor = executor or LocalExecutor(workers, verbose)
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
    if todo:
        executor.run(todo, record, on_frames)
    return summary


def _run_pool(jobs: list[Job], workers: int, verbose: bool, record: Callable[[FileResult], None],
              on_frames: Callable[[int], None] | None) -> None:
    # spawn, not fork: MediaPipe's graphs own threads that a fork would copy half-alive.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    todo = deque(jobs)
    while todo:
        suspects = _pool_pass(todo, workers, context, queue, verbose, record, on_frames)
        # A worker died (out of memory, a native crash): rerun each job that was in flight
        # alone, so only the one that really kills its worker fails.
        for job in suspects:
            _remove_partials(job)
            if _pool_pass(deque([job]), 1, context, queue, verbose, record, on_frames):
                _remove_partials(job)
                record(worker_died(job))


def _remove_partials(job: Job) -> None:
    """The temporary files a killed worker left for ``job``'s outputs (no other job writes them)."""
    for target in job.targets():
        remove_partials(target)


def _pool_pass(todo: deque[Job], workers: int, context: Any, queue: Any, verbose: bool,
               record: Callable[[FileResult], None], on_frames: Callable[[int], None] | None) -> list[Job]:
    """Run jobs from ``todo`` on one pool until it is empty or the pool breaks; return the
    jobs that were in flight when it broke."""
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(queue,)) as pool:
        running: dict[Any, Job] = {}
        try:
            while todo or running:
                while todo and len(running) < workers:
                    job = todo.popleft()
                    running[pool.submit(run_job, job, None, verbose)] = job
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(queue, on_frames)
                for future in done:
                    job = running.pop(future)
                    try:
                        record(future.result())
                    except BrokenProcessPool:
                        return [job, *running.values()]
                    except SystemExit as exc:  # a worker stopped by SIGTERM sent to the whole group
                        raise KeyboardInterrupt from exc
        except KeyboardInterrupt:
            for proc in list(pool._processes.values()):  # private, but the only handle on running workers
                proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            _drain(queue, on_frames)
    return []


def _drain(queue: Any, on_frames: Callable[[int], None] | None) -> None:
    while not queue.empty():
        count = queue.get_nowait()
        if on_frames:
            on_frames(count)
