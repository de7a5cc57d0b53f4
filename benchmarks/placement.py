"""Where the benchmark's work runs (CPU affinity), and checks that it held.

Two placements are measured, facecli and the raw engine always under the same one:

- one core: face work and the ffmpeg decoder share one CPU, as on a one-core worker;
- decoder on a 2nd core: the face work (this process, so MediaPipe's threads too) keeps its
  CPU and every ffmpeg decoder runs on another one, as on a 2-core laptop where the decoder
  process gets the core the face work leaves free.

Standard library only: run.py pins the process through this module before numpy, MediaPipe
or facecli start any thread.
"""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from memory import descendants, proc_status
from timing import Workload

WATCH_EVERY_S = 0.25  # decoder affinity sampling period (warm-up runs only)


def pin_one_core() -> tuple[int, list[int]]:
    """Pin this process to one CPU before any worker thread or child exists; return it and the CPUs left.

    Threads and children inherit the affinity they are born with, so the ffmpeg decoder,
    MediaPipe's graph threads and the facecli subprocesses all share this one core (unless a
    placement moves the decoder). The last CPU is taken: the first one usually serves more of
    the system's interrupts.
    """
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    os.sched_setaffinity(0, {cpu})
    return cpu, sorted(allowed - {cpu})


def stray_threads(cpu: int) -> int:
    """Threads of this process allowed off ``cpu`` (should be 0: checks the pinning worked)."""
    tids = [int(t) for t in os.listdir("/proc/self/task")]
    return sum(1 for tid in tids if _affinity(tid) not in ({cpu}, None))


def _affinity(tid: int) -> set[int] | None:
    try:
        return os.sched_getaffinity(tid)
    except OSError:  # the thread ended meanwhile
        return None


@dataclass(frozen=True)
class Placement:
    """The CPU of the face work (this process) and the CPU of every ffmpeg decoder it starts."""

    face_cpu: int
    decoder_cpu: int

    @property
    def shared(self) -> bool:
        return self.face_cpu == self.decoder_cpu

    @property
    def tag(self) -> str:
        """Added to a metric's subject ("example", "720p"); empty for the one-core placement."""
        return "" if self.shared else " [decoder on 2nd core]"

    @property
    def title(self) -> str:
        return "one core" if self.shared else f"face work on CPU {self.face_cpu}, decoder on CPU {self.decoder_cpu}"


def placements(face_cpu: int, other_cpus: list[int]) -> list[Placement]:
    """One core, then (given a second CPU and taskset) the decoder on another CPU."""
    split = other_cpus[:1] if shutil.which("taskset") else []
    return [Placement(face_cpu, face_cpu)] + [Placement(face_cpu, cpu) for cpu in split]


def decoder_wrapper(cpu: int, ffmpeg: str, folder: Path) -> Path:
    """A shell script that runs ``ffmpeg`` with its arguments on ``cpu``.

    ``exec`` twice (sh, then taskset): the decoder keeps the pid facecli started, so facecli
    stops and reaps it as usual and its CPU time still counts as this process's child's.
    """
    script = folder / f"decode-on-cpu{cpu}.sh"  # a name that does not look like ffmpeg to DecoderWatch
    script.write_text(f'#!/bin/sh\nexec taskset -c {cpu} {shlex.quote(ffmpeg)} "$@"\n')
    script.chmod(0o755)
    return script


class DecoderWatch:
    """Cpus_allowed_list of every ffmpeg child of this process, sampled from /proc.

    Sampling runs in a thread of this process, so it is only on during each workload's
    untimed warm-up call (``first_call``), never during a timed one.
    """

    def __init__(self, ffmpeg: str):
        self.ffmpeg = os.path.realpath(ffmpeg)
        self.seen: dict[str, dict[int, str]] = {}  # workload -> {ffmpeg pid: Cpus_allowed_list}

    def first_call(self, name: str, workload: Workload) -> Workload:
        """``workload``, with its first call watched."""
        calls = itertools.count()

        def run():
            if next(calls):
                return workload()
            with self._sampling(self.seen.setdefault(name, {})):
                return workload()

        return run

    @contextmanager
    def _sampling(self, seen: dict[int, str]) -> Iterator[None]:
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(WATCH_EVERY_S):
                for pid in descendants(os.getpid())[1:]:
                    if self._is_ffmpeg(pid) and (cpus := proc_status(pid).get("Cpus_allowed_list")):
                        seen[pid] = cpus.strip()

        thread = threading.Thread(target=poll, name="decoder-watch", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _is_ffmpeg(self, pid: int) -> bool:
        try:
            return os.path.realpath(f"/proc/{pid}/exe") == self.ffmpeg
        except OSError:
            return False

    def check(self, cpu: int) -> str:
        """One line per workload on what was seen; raise if a decoder was off ``cpu`` or none was seen."""
        lines, wrong = [], []
        for name, seen in self.seen.items():
            cpus = sorted(set(seen.values()))
            lines.append(f"{name}: {len(seen)} ffmpeg process(es) seen, Cpus_allowed_list {', '.join(cpus) or '-'}")
            if cpus != [str(cpu)]:
                wrong.append(name)
        if wrong:
            raise RuntimeError(f"ffmpeg decoders not seen on CPU {cpu} alone ({', '.join(wrong)}): " + "; ".join(lines))
        return "; ".join(lines)
