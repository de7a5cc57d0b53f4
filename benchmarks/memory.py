"""Peak memory of a command run as a child process (Linux /proc).

Why not ``ru_maxrss`` (wait4 / RUSAGE_CHILDREN): at exec, Linux folds the high-water mark of
the memory the child is leaving behind, the spawning process's, into the child's maxrss. Run
from this benchmark after MediaPipe is loaded (400-500 MB), even ``/bin/true`` reports 500 MB.
The kernel's per-process high-water mark, VmHWM in /proc/PID/status, has no such carry-over.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_EVERY_S = 0.2  # /proc sampling period: short next to a run, cheap next to a frame


@dataclass
class PeakMemory:
    """What one run of a command used.

    ``hwm_mb``: the child's own peak RSS (VmHWM, kept by the kernel, so no peak is missed;
    read until the last sample, up to ``SAMPLE_EVERY_S`` before it exits). ``tree_peak_mb``:
    the largest sum of VmRSS over the child and all its descendants (the ffmpeg decoder) seen
    when sampling, so it can miss a peak shorter than a sample period.
    """

    wall_s: float = 0.0
    hwm_mb: float = 0.0
    tree_peak_mb: float = 0.0
    cpus_seen: set[str] = field(default_factory=set)  # Cpus_allowed_list of every process in the tree
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (elapsed s, tree peak MB) per tick


def _parent_of(pid_dir: Path) -> int | None:
    try:
        stat = (pid_dir / "stat").read_text()
    except OSError:  # the process ended between listing and reading
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[1])  # the name in (...) may hold spaces


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid_dir in Path("/proc").glob("[0-9]*"):
        parent = _parent_of(pid_dir)
        if parent is not None:
            children.setdefault(parent, []).append(int(pid_dir.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def proc_status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _mb(status: dict[str, str], key: str) -> float:
    return int(status.get(key, "0 kB").split()[0]) / 1024


def _sample(root: int, peak: PeakMemory) -> None:
    total_mb = 0.0
    for pid in descendants(root):
        status = proc_status(pid)
        total_mb += _mb(status, "VmRSS")
        if pid == root:
            peak.hwm_mb = max(peak.hwm_mb, _mb(status, "VmHWM"))
        if "Cpus_allowed_list" in status:
            peak.cpus_seen.add(status["Cpus_allowed_list"].strip())
    peak.tree_peak_mb = max(peak.tree_peak_mb, total_mb)


def peak_memory(cmd: list[str], on_tick: Callable[[float, PeakMemory], None] | None = None,
                tick_every_s: float = 30.0) -> PeakMemory:
    """Run ``cmd`` to the end and return its peak memory; raise with its stderr tail if it fails.

    Every ``tick_every_s`` the peak so far joins ``timeline`` and ``on_tick(elapsed_s, peak)`` is
    called (progress lines).
    """
    peak = PeakMemory()
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: nobody drains a pipe while we poll
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        next_tick = start + tick_every_s
        while proc.poll() is None:
            _sample(proc.pid, peak)
            now = time.perf_counter()
            if now >= next_tick:
                peak.timeline.append((now - start, peak.tree_peak_mb))
                if on_tick:
                    on_tick(now - start, peak)
                next_tick += tick_every_s
            time.sleep(SAMPLE_EVERY_S)
        peak.wall_s = time.perf_counter() - start
        if proc.returncode != 0:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    return peak
