"""``--executor ray``: a batch as Ray tasks, one per input file, on this machine or a cluster.

Only where the jobs run changes: each task is :func:`facecli.batch.run_job` on one Job, and
the driver feeds the FileResults it returns to the same progress bar, summary, ``--report``
and ``--json`` as the local process pool. Resume (complete outputs are skipped) is decided on
the driver before anything is sent. Ray is imported only here, and only when asked for.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__, chunks
from .batch import FileResult, Job, run_job, worker_died
from .errors import FacecliError, UsageError
from .stages.common import ProgressCallback

RAY_MISSING = "--executor ray needs Ray, which is not installed here: pip install 'facecli[ray]'"
# Native thread pools that size themselves from these when they load: a task's worker process
# starts with them set to the cores the task reserved (runtime_env), before NumPy loads.
# OpenBLAS keeps facecli's own setting (facecli/__init__.py), at most those cores.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
REPORT_EVERY_S = 0.5  # how often a task sends its frame count (a message per frame would cost more than the frame)
POLL_S = 0.2
CANCEL_GRACE_S = 10.0  # after Ctrl-C, how long tasks get to remove their partial files before they are killed
CHECKED_PATHS = 20  # inputs and output folders the pre-flight check looks at on every node


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise UsageError(RAY_MISSING) from exc
    return ray


@dataclass(frozen=True)
class RayExecutor:
    """The batch's jobs as Ray tasks (``address``: None starts Ray on this machine)."""

    address: str | None = None
    cpus_per_task: int = 1
    retries: int = 3
    chunk_seconds: float | None = None
    max_in_flight: int | None = None  # -j: files at a time; default: what the cluster's CPUs allow
    verbose: bool = False

    def run(self, jobs: list[Job], record: Callable[[FileResult], None],
            on_frames: Callable[[int], None] | None) -> None:
        ray = import_ray()
        if self.cpus_per_task < 1 or self.retries < 0:
            raise UsageError("need --cpus-per-task >= 1 and --retries >= 0")
        if self.chunk_seconds is not None:
            for job in jobs:
                chunks.check_chunkable(job, self.chunk_seconds)
        started = _connect(ray, self.address, self.verbose)
        try:
            counter = _frame_counter(ray) if on_frames else None
            tasks = _Tasks(self.cpus_per_task, self.retries, counter)
            if self.chunk_seconds is not None:
                jobs = [chunks.chunked(job, self.chunk_seconds, tasks) for job in jobs]
            check_nodes(ray, jobs, self.cpus_per_task)
            _run_all(ray, jobs, tasks, self._in_flight(ray), self.verbose, record, counter, on_frames)
        finally:
            if started:
                ray.shutdown()

    def _in_flight(self, ray: Any) -> int:
        # Twice what fits at once keeps every core busy while results travel back, without
        # handing Ray a hundred thousand tasks up front.
        slots = int(ray.cluster_resources().get("CPU", 1) // self.cpus_per_task)
        return self.max_in_flight or max(1, 2 * slots)


def _connect(ray: Any, address: str | None, verbose: bool) -> bool:
    """Join the cluster at ``address``, or start Ray here; True when this call did (and ends it)."""
    if ray.is_initialized():  # a program that set Ray up itself (the tests) lends its connection
        return False
    # Ray puts its own SIGTERM handler in place (exit without unwinding): keep facecli's, which
    # stops the batch as Ctrl-C does.
    sigterm = signal.getsignal(signal.SIGTERM)
    local = {"include_dashboard": False} if address is None else {}
    if address is None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a local run reports nothing anywhere
    try:
        # "local": a new Ray here, never one a stale ray_current_cluster file points at.
        ray.init(address=address or "local", logging_level=logging.ERROR, log_to_driver=verbose, **local)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        detail = " ".join(str(exc).split())
        raise UsageError(f"cannot reach the Ray cluster at {address or 'this machine'} ({detail}); start it with "
                         "`ray start --head`, or check --address (docs/scaling.md)") from exc
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    return True


def _frame_counter(ray: Any) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # On the driver's node: a lost worker node must not take the progress bar with it.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return ray.remote(num_cpus=0)(FrameCounter).options(scheduling_strategy=here).remote()


class FrameCounter:
    """A Ray actor: frames processed by every task, for the driver's progress bar."""

    def __init__(self) -> None:
        self.frames = 0

    def add(self, frames: int) -> None:
        self.frames += frames

    def take(self) -> int:
        frames, self.frames = self.frames, 0
        return frames


class _Reporter:
    """A task's progress callback: frame counts sent to the driver's counter every REPORT_EVERY_S."""

    def __init__(self, counter: Any):
        self.counter, self.pending, self.sent_at = counter, 0, time.monotonic()

    def __call__(self, frames: int) -> None:
        self.pending += frames
        if time.monotonic() - self.sent_at >= REPORT_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.counter.add.remote(self.pending)
        self.pending, self.sent_at = 0, time.monotonic()


def limit_threads(cpus: int) -> None:
    """Keep this process's thread pools to the cores its task reserved, so tasks sharing a
    node do not fight over cores (BLAS and OpenMP read the task's environment as they load)."""
    import cv2

    cv2.setNumThreads(cpus)
    torch = sys.modules.get("torch")  # loaded later, it reads OMP_NUM_THREADS itself
    if torch is not None:
        torch.set_num_threads(cpus)
    _limit_onnxruntime(cpus)


@functools.cache
def _limit_onnxruntime(cpus: int) -> None:
    # onnxruntime has no process-wide thread setting: sessions made without options use every
    # core. The backends make theirs through onnxruntime.InferenceSession; this one fills in
    # the thread counts for those that give no options.
    try:
        import onnxruntime as ort
    except ImportError:
        return
    base = ort.InferenceSession

    class LimitedSession(base):  # type: ignore[misc,valid-type]
        def __init__(self, path_or_bytes: Any, sess_options: Any = None, *args: Any, **kwargs: Any):
            if sess_options is None:
                sess_options = ort.SessionOptions()
                sess_options.intra_op_num_threads, sess_options.inter_op_num_threads = cpus, 1
            super().__init__(path_or_bytes, sess_options, *args, **kwargs)

    ort.InferenceSession = LimitedSession


def _in_task(fn: Callable[[Any, ProgressCallback | None], Any], item: Any, cpus: int, counter: Any) -> Any:
    """What every task runs: ``fn(item, progress)`` within its cores, frames reported."""
    limit_threads(cpus)
    reporter = _Reporter(counter) if counter is not None else None
    try:
        return fn(item, reporter)
    finally:
        if reporter:
            reporter.flush()


@dataclass(frozen=True)
class _FileWork:
    verbose: bool

    def __call__(self, job: Job, progress: ProgressCallback | None) -> FileResult:
        return run_job(job, progress, self.verbose)


def _thread_env(cpus: int) -> dict[str, Any]:
    openblas = min(cpus, int(os.environ.get("OPENBLAS_NUM_THREADS", "1")))
    return {"env_vars": {**{name: str(cpus) for name in THREAD_VARIABLES}, "OPENBLAS_NUM_THREADS": str(openblas)}}


@functools.cache
def _task(cpus: int, retries: int) -> Any:
    return import_ray().remote(_in_task).options(num_cpus=cpus, max_retries=retries, retry_exceptions=False,
                                                 runtime_env=_thread_env(cpus))


@dataclass(frozen=True)
class _Tasks:
    """Submits work as Ray tasks with the batch's cores, retries and frame counter; also the
    :class:`facecli.chunks.Mapper` a long video's parts run through (from inside its file's task)."""

    cpus: int
    retries: int
    counter: Any

    def submit(self, fn: Callable[[Any, ProgressCallback | None], Any], item: Any) -> Any:
        return _task(self.cpus, self.retries).remote(fn, item, self.cpus, self.counter)

    def map(self, fn: Callable[[Any, ProgressCallback | None], Any], items: list[Any]) -> list[Any]:
        ray = import_ray()
        refs = [self.submit(fn, item) for item in items]
        try:
            return [ray.get(ref) for ref in refs]
        except BaseException as exc:
            for ref in refs:
                ray.cancel(ref)
            if isinstance(exc, ray.exceptions.RayTaskError):
                raise exc.cause from None  # its own error and message, as if it ran here
            if isinstance(exc, ray.exceptions.RayError):
                raise FacecliError(f"a worker died {self.retries + 1} times under a part of it (out of memory, a "
                                   "crash in a native library or a lost machine); run it alone with -v") from None
            raise


def _run_all(ray: Any, jobs: list[Job], tasks: _Tasks, in_flight: int, verbose: bool,
             record: Callable[[FileResult], None], counter: Any, on_frames: Callable[[int], None] | None) -> None:
    todo, running = deque(jobs), {}
    work = _FileWork(verbose)
    try:
        while todo or running:
            while todo and len(running) < in_flight:
                job = todo.popleft()
                running[tasks.submit(work, job)] = job
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            if counter is not None and on_frames:
                on_frames(ray.get(counter.take.remote()))
            for ref in done:
                record(_result(ray, ref, running.pop(ref), tasks.retries))
    except KeyboardInterrupt:
        _cancel(ray, list(running))
        raise


def _result(ray: Any, ref: Any, job: Job, retries: int) -> FileResult:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # run_job turns a file's errors into results: this is Ray's
        return FileResult(str(job.source), str(job.output), "failed",
                          f"{job.source}: internal error {type(exc.cause).__name__}: {exc.cause} (please report this)")
    except ray.exceptions.RayError:
        return worker_died(job, f" {retries + 1} times")


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Stop running tasks as Ctrl-C stops local workers: a KeyboardInterrupt in each, which
    removes its partial files; those still running after CANCEL_GRACE_S are killed."""
    for ref in refs:
        ray.cancel(ref, recursive=True)
    _, left = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
    for ref in left:
        ray.cancel(ref, force=True, recursive=True)


@functools.cache
def code_fingerprint() -> str:
    """This facecli's code: a digest of its source files (one version number covers many builds)."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def check_nodes(ray: Any, jobs: list[Job], cpus_per_task: int) -> None:
    """Fail early, in one line, where a node cannot take part: too few cores, another facecli,
    or files it cannot see where this machine sees them (a shared filesystem is needed)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    largest = max((n["Resources"]["CPU"] for n in nodes), default=0)
    if cpus_per_task > largest:
        raise UsageError(f"--cpus-per-task {cpus_per_task}: no node of the Ray cluster has that many CPUs "
                         f"(the largest has {largest:g})")
    files = (p for job in jobs for p in (job.source, *job.extra_inputs) if p.is_file())  # a missing one fails alone
    inputs = [(str(p.resolve()), p.stat().st_size) for p in itertools.islice(files, CHECKED_PATHS)]
    folders = sorted({target.parent for job in jobs for target in job.targets()})[:CHECKED_PATHS]
    token = os.urandom(8).hex()
    probes = [folder.resolve() / f".facecli-probe-{token}" for folder in folders if folder.is_dir()]
    check = ray.remote(_node_problem)
    try:
        for probe in probes:
            probe.write_text(token)
        # The file tasks' environment: the worker that checked runs the first file, started already.
        problems = ray.get([check.options(num_cpus=0, runtime_env=_thread_env(cpus_per_task),
                                          scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                            .remote(n["NodeManagerAddress"], __version__, code_fingerprint(), inputs,
                                    [str(p) for p in probes], token) for n in nodes])
    except ray.exceptions.RayError as exc:
        cause = getattr(exc, "cause", None) or exc  # a task's own error, else Ray's (its environment, a lost node)
        detail = " ".join(f"{type(cause).__name__}: {cause}".split())
        raise UsageError(f"a Ray worker cannot run facecli ({detail}); install it on every node or ship it with "
                         "a runtime_env (docs/scaling.md)") from None
    finally:
        for probe in probes:
            probe.unlink(missing_ok=True)
    problem = next((p for p in problems if p), None)
    if problem:
        raise UsageError(problem)


def _node_problem(node: str, version: str, fingerprint: str, inputs: list[tuple[str, int]],
                  probes: list[str], token: str) -> str | None:
    """On one node: why it cannot take part, in one line, or None."""
    if (__version__, code_fingerprint()) != (version, fingerprint):
        return (f"Ray node {node} runs facecli {__version__} (code {code_fingerprint()}), this machine facecli "
                f"{version} (code {fingerprint}); install the same facecli on every node (docs/scaling.md)")
    for path, size in inputs:
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            return (f"Ray node {node} does not see the input {path} as this machine does; put inputs and "
                    "outputs on a filesystem every node mounts at the same path (docs/scaling.md)")
    for probe in probes:
        try:
            seen = Path(probe).read_text() == token
        except OSError:
            seen = False
        if not seen:
            return (f"Ray node {node} does not see the output folder {Path(probe).parent} as this machine does; "
                    "put inputs and outputs on a filesystem every node mounts at the same path (docs/scaling.md)")
    return None
