"""The one timing helper: every workload (facecli or the raw engine) is timed the same way."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

NOISY_SPREAD = 0.15  # (max - min) / median of the wall times above which a rate is flagged noisy


@dataclass(frozen=True)
class Work:
    """What one run of a workload did: frames read and face fits (mesh results) produced."""

    frames: int
    fits: int


Workload = Callable[[], Work]


@dataclass
class Timing:
    """Repeated timings of one workload; rates use the median (robust to one noisy run).

    Wall time is the measure. CPU time (this process's threads plus the children it reaped,
    i.e. the ffmpeg decoder) is kept beside it: on one pinned core, wall - CPU is time the
    core spent on other people's work or idle, so CPU time stays steady on a busy machine.
    """

    work: Work
    first_s: float  # the untimed warm-up run: imports and first-graph costs land here
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)

    def rate(self, what: str = "frames", clock: str = "wall") -> float:
        """Frames or fits per second of median wall or CPU time."""
        count = {"frames": self.work.frames, "fits": self.work.fits}[what]
        return count / statistics.median({"wall": self.wall_s, "cpu": self.cpu_s}[clock])

    @property
    def median_s(self) -> float:
        return statistics.median(self.wall_s)

    @property
    def noisy(self) -> bool:
        return (max(self.wall_s) - min(self.wall_s)) / self.median_s > NOISY_SPREAD

    @property
    def spread(self) -> str:
        lo, hi = min(self.wall_s), max(self.wall_s)
        return f"{lo:.2f}-{hi:.2f} s ({(hi - lo) / self.median_s:.0%})"


def _cpu_seconds() -> float:
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


def time_once(workload: Workload) -> tuple[float, float, Work]:
    """Wall and CPU seconds from call to return: the workload's own set-up and tear-down are in."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    work = workload()
    return time.perf_counter() - wall, _cpu_seconds() - cpu, work


def measure(workloads: dict[str, Workload], repeats: int) -> dict[str, Timing]:
    """Warm each workload once (untimed), then time them ``repeats`` times, interleaved.

    Interleaving (A B C, A B C, ...) rather than A A A, B B B spreads slow drifts of the
    machine (other tenants, thermal state) over every workload, so the ratios stay fair.
    """
    timings = {}
    for name, workload in workloads.items():
        first_s, _, work = time_once(workload)
        timings[name] = Timing(work, first_s)
    for _ in range(repeats):
        for name, workload in workloads.items():
            wall_s, cpu_s, work = time_once(workload)
            if work != timings[name].work:  # the job must be the same size every time, or rates mislead
                raise RuntimeError(f"{name}: run did {work}, the warm-up did {timings[name].work}")
            timings[name].wall_s.append(wall_s)
            timings[name].cpu_s.append(cpu_s)
    return timings
