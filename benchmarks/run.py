"""facecli benchmarks (``make bench``): the landmarks stage against the raw MediaPipe engine.

1. Example video (examples/Megamind.avi): facecli's whole landmarks stage vs a plain
   tracking-mode FaceMesh loop over the same decoded frames, on one core; ratios of frames/s
   and face-fits/s (target: facecli >= 0.8 x the raw engine).
2. One 720p face on one core (target: >= 100 frames/s).
3. Peak memory of ``facecli landmarks`` on a 1-minute and a 10-minute video (target: the
   same; BENCH_QUICK=1 compares 1 and 3 minutes instead).

Sections 1 and 2 run twice, in two placements (benchmarks/placement.py): everything on one
core, then the face work on that core and every ffmpeg decoder on a second one ("1b", "2b";
metrics tagged "[decoder on 2nd core]"). facecli and the raw engine always share a placement;
ratios never mix them.

Every number comes from this one run. Benchmarks report, tests assert: the exit code is 0
even when a target is missed.

    .venv/bin/python benchmarks/run.py [--write-docs] [--repeats N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# Standard library only up to here (and in these three helpers): numpy, MediaPipe and facecli
# are imported after pin_one_core(), through ``workloads``.
from memory import PeakMemory, peak_memory
from placement import DecoderWatch, Placement, pin_one_core, placements, stray_threads
from timing import Timing, Workload, measure

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "Megamind.avi"
DOCS = REPO / "docs" / "benchmarks.md"

MIN_RATIO = 0.8  # facecli vs the raw engine
MIN_720P_FPS = 100.0
MAX_MEMORY_GROWTH = 1.2  # peak memory, long video / short video


@dataclass(frozen=True)
class Row:
    """One line of the summary table."""

    metric: str
    value: str
    target: str = ""
    status: str = "info"


def at_least(metric: str, value: float, target: float, cpu_value: float, *timings: Timing) -> Row:
    """A row judged on wall time; the CPU-time figure and a noise flag ride along for the reader."""
    status = "PASS" if value >= target else "MISS"
    if any(t.noisy for t in timings):
        status += " (noisy)"
    return Row(metric, f"{value:.2f} (CPU {cpu_value:.2f})", f">= {target:g}", status)


def ratio(metric: str, ours: Timing, raw: Timing, what: str) -> Row:
    """facecli / raw engine, of frames/s or fits/s."""
    wall, cpu = (ours.rate(what, clock) / raw.rate(what, clock) for clock in ("wall", "cpu"))
    return at_least(metric, wall, MIN_RATIO, cpu, ours, raw)


def at_most(metric: str, value: float, target: float) -> Row:
    return Row(metric, f"{value:.2f}", f"<= {target:g}", "PASS" if value <= target else "MISS")


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- speed


def measure_placed(where: Placement, folder: Path, workloads: dict[str, Workload], repeats: int) -> dict[str, Timing]:
    """``measure`` with every ffmpeg child on ``where.decoder_cpu``; prints the checks that the placement held."""
    from workloads import decoders_placed
    from facecli import media

    watch = DecoderWatch(media.ffmpeg_exe())
    with decoders_placed(where, folder):
        timings = measure({name: watch.first_call(name, w) for name, w in workloads.items()}, repeats)
    print_timings(timings, where)
    print(f"  threads of this process allowed off CPU {where.face_cpu}: {stray_threads(where.face_cpu)}")
    print(f"  ffmpeg children during the warm-ups (/proc/PID/status): {watch.check(where.decoder_cpu)}")
    return timings


def print_timings(timings: dict[str, Timing], where: Placement) -> None:
    print(f"  {'workload':<9} {'first s':>7} {'median s':>8}  {'wall spread':<19} {'CPU s':>5} {'frames':>6}"
          f" {'fits':>5} {'frames/s':>8} {'fits/s':>7} {'CPU frames/s':>12}")
    for name, t in timings.items():
        print(f"  {name:<9} {t.first_s:>7.2f} {t.median_s:>8.2f}  {t.spread:<19} {statistics.median(t.cpu_s):>5.2f}"
              f" {t.work.frames:>6} {t.work.fits:>5} {t.rate():>8.1f} {t.rate('fits'):>7.1f} {t.rate(clock='cpu'):>12.1f}")
    print("  rates: median wall time (CPU: median CPU time of this process + its ffmpeg child, steadier when the"
          " machine is busy" + ("" if where.shared else "; here it adds up two cores, so it can exceed wall time") + ")")


def bench_example(folder: Path, repeats: int, where: Placement) -> list[Row]:
    from workloads import facecli_workload, raw_mesh_workload

    section(f"1{'' if where.shared else 'b'}. landmarks on {EXAMPLE.name}: facecli vs raw FaceMesh, {where.title},"
            f" median of {repeats}")
    cold = "mediapipe" not in sys.modules  # facecli goes first, so its warm-up is a true cold start
    timings = measure_placed(where, folder, {
        "facecli": facecli_workload(EXAMPLE, folder),
        "raw N=1": raw_mesh_workload(EXAMPLE, 1),
        "raw N=2": raw_mesh_workload(EXAMPLE, 2),
    }, repeats)
    print("  first s: the untimed warm-up run" + (" (facecli's is the cold start: it imports mediapipe)" if cold else ""))
    print("  fits: faces fitted in all (facecli rows; raw: faces returned). N=2 is facecli's job size:"
          " it also tracks the background face.")
    print("  raw N=2 reruns its own detector on every frame where it holds fewer than 2 faces"
          " (MediaPipe skips detection only with max_num_faces tracked), so it is slower than N=1.")
    ours, subject = timings["facecli"], f"example{where.tag}"
    rows = [
        Row(f"{subject}: facecli frames/s | face-fits/s", f"{ours.rate():.1f} | {ours.rate('fits'):.1f}"),
        Row(f"{subject}: facecli {'cold ' if cold else ''}first call",
            f"{ours.first_s:.2f} s ({ours.work.frames / ours.first_s:.1f} frames/s)"),
    ]
    for n in (1, 2):
        raw = timings[f"raw N={n}"]
        rows += [
            Row(f"{subject}: raw N={n} frames/s | face-fits/s", f"{raw.rate():.1f} | {raw.rate('fits'):.1f}"),
            ratio(f"{subject}: frames/s facecli / raw N={n}", ours, raw, "frames"),
            ratio(f"{subject}: face-fits/s facecli / raw N={n}", ours, raw, "fits"),
        ]
    return rows


def make_720p_clip(folder: Path) -> Path:
    from workloads import make_close_up_720p

    clip = make_close_up_720p(EXAMPLE, folder)
    print(f"\n720p input for section 2: {clip.name}, 1280x720 H.264, the example's close-up shot played forward"
          " and back, looped")
    return clip


def bench_720p(clip: Path, folder: Path, repeats: int, where: Placement) -> list[Row]:
    from workloads import facecli_workload, raw_mesh_workload

    section(f"2{'' if where.shared else 'b'}. one 720p face, {where.title}, median of {repeats}")
    timings = measure_placed(
        where, folder, {"facecli": facecli_workload(clip, folder), "raw N=1": raw_mesh_workload(clip, 1)}, repeats
    )
    ours, raw, subject = timings["facecli"], timings["raw N=1"], f"720p{where.tag}"
    return [
        at_least(f"{subject}: facecli frames/s", ours.rate(), MIN_720P_FPS, ours.rate(clock="cpu"), ours),
        Row(f"{subject}: raw N=1 frames/s", f"{raw.rate():.1f}"),
        ratio(f"{subject}: frames/s facecli / raw N=1", ours, raw, "frames"),
    ]


# --------------------------------------------------------------------------- memory


def facecli_command() -> list[str]:
    script = Path(sys.executable).with_name("facecli")  # the console script of this venv
    return [str(script)] if script.exists() else [sys.executable, "-m", "facecli"]


def run_landmarks_cli(video: Path, folder: Path, label: str) -> tuple[PeakMemory, int]:
    """``facecli landmarks VIDEO -o DIR -q`` in a child: its peak memory and frame count, with progress lines."""
    from workloads import frames_written

    out = folder / f"out_{video.stem}"
    cmd = [*facecli_command(), "landmarks", str(video), "-o", str(out), "-q"]
    print(f"  {label}: {' '.join(cmd[-5:])}", flush=True)
    peak = peak_memory(cmd, on_tick=lambda s, p: print(f"    {label}: {s:.0f} s, tree peak so far {p.tree_peak_mb:.0f} MB",
                                                        flush=True))
    frames = frames_written(out / f"{video.stem}.landmarks.parquet")
    print(f"    {label}: {frames} frames in {peak.wall_s:.1f} s ({frames / peak.wall_s:.1f} frames/s), "
          f"facecli peak {peak.hwm_mb:.0f} MB, tree peak {peak.tree_peak_mb:.0f} MB, "
          f"CPUs allowed in the tree: {', '.join(sorted(peak.cpus_seen))}", flush=True)
    shutil.rmtree(out)
    return peak, frames


def growth_per_1000_frames(peak: PeakMemory, frames: int) -> str:
    """Tree peak added after the first progress tick, per 1000 frames (frames assumed evenly paced).

    The peak/peak ratio cannot tell a plateau from a slow leak; a slope can.
    """
    if not peak.timeline:
        return "n/a (run shorter than one tick)"
    t0, mb0 = peak.timeline[0]
    later_frames = frames * (1 - t0 / peak.wall_s)
    return f"{(peak.tree_peak_mb - mb0) / later_frames * 1000:+.2f} MB ({mb0:.0f} MB at {t0:.0f} s)"


def bench_memory(folder: Path, quick: bool) -> list[Row]:
    from workloads import make_looped

    short_s, long_s = (60, 180) if quick else (60, 600)
    section(f"3. peak memory of `facecli landmarks`, {short_s // 60} min vs {long_s // 60} min video"
            + (" (BENCH_QUICK)" if quick else ""))
    print("  facecli peak: VmHWM, the kernel's high-water mark of the facecli process's own RSS"
          " (not ru_maxrss: see benchmarks/memory.py)")
    print("  tree peak: largest sum of VmRSS over facecli + its ffmpeg decoder, /proc sampled every 0.2 s")
    runs = {}
    for seconds in (short_s, long_s):
        video = make_looped(EXAMPLE, folder, seconds)
        runs[seconds] = run_landmarks_cli(video, folder, f"{seconds // 60} min")
        video.unlink()
    (short, _), (long, long_frames) = runs[short_s], runs[long_s]
    a, b = short_s // 60, long_s // 60
    return [
        Row(f"memory: facecli peak {a} min | {b} min", f"{short.hwm_mb:.0f} | {long.hwm_mb:.0f} MB"),
        at_most(f"memory: facecli peak {b} min / {a} min", long.hwm_mb / short.hwm_mb, MAX_MEMORY_GROWTH),
        Row(f"memory: tree peak {a} min | {b} min", f"{short.tree_peak_mb:.0f} | {long.tree_peak_mb:.0f} MB"),
        at_most(f"memory: tree peak {b} min / {a} min", long.tree_peak_mb / short.tree_peak_mb, MAX_MEMORY_GROWTH),
        Row(f"memory: tree peak growth per 1000 frames, {b} min run", growth_per_1000_frames(long, long_frames)),
        Row(f"memory: wall {a} min | {b} min video", f"{short.wall_s:.0f} | {long.wall_s:.0f} s"),
    ]


# --------------------------------------------------------------------------- report


def text_table(rows: list[Row]) -> str:
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("metric", "value", "target")]
    return "\n".join(
        f"{r.metric:<{widths[0]}}  {r.value:>{widths[1]}}  {r.target:<{widths[2]}}  {r.status}" for r in rows
    )


def markdown_table(rows: list[Row]) -> str:
    lines = ["| metric | value | target | status |", "|---|---:|---|---|"]
    cells = ([c.replace("|", "\\|") for c in (r.metric, r.value, r.target, r.status)] for r in rows)
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def _command_output(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO).stdout
    except OSError:
        return ""


def machine() -> dict[str, str]:
    model = next((ln.split(":", 1)[1].strip() for ln in _command_output(["lscpu"]).splitlines()
                  if ln.startswith("Model name:")), platform.processor() or "unknown")
    mem_kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    commit = _command_output(["git", "rev-parse", "--short", "HEAD"]).strip() or "unknown"
    dirty = " (with uncommitted changes)" if _command_output(["git", "status", "--porcelain", "facecli"]).strip() else ""
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="minutes"),
        "CPU": f"{model}, {os.cpu_count()} cores (face work pinned to 1)",
        "RAM": f"{mem_kb / 2**20:.0f} GiB",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "mediapipe": metadata.version("mediapipe"),
        "facecli": f"{metadata.version('facecli')}, commit {commit}{dirty}",
    }


PORTRAITS_MARKER = "<!-- animate and reenact benchmarks: written by benchmarks/portraits.py -->"
STABILIZE_MARKER = "<!-- stabilize benchmarks: written by benchmarks/stabilize_bench.py -->"
RECONSTRUCT_MARKER = "<!-- reconstruct benchmarks: written by benchmarks/reconstruct_bench.py -->"
CLASSIFY_MARKER = "<!-- classify benchmarks: written by benchmarks/classify_bench.py -->"
DIFFUSION_MARKER = "<!-- diffusers renderer benchmarks: written by benchmarks/diffusion_bench.py -->"
RAY_MARKER = "<!-- ray executor benchmarks: written by benchmarks/ray_bench.py -->"
BACKENDS_MARKER = "<!-- optional backends benchmarks: written by benchmarks/backends_bench.py -->"
DETECT_MARKER = "<!-- detect benchmarks: written by benchmarks/detect_bench.py -->"
SECTION_START = "<!-- "  # every section other scripts write begins with such a marker line


def run_benches(doc: str, prefix: str, benches: Callable[[Path], list[Row]],
                write: Callable[[list[Row], str], None], argv: list[str] | None = None, cores: str = "all used") -> int:
    """The main of a benchmark script: run ``benches`` in a scratch folder, print the summary,
    and with ``--write-docs`` hand the rows and the machine's description to ``write``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        rows = benches(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    section("summary")
    print(text_table(rows))
    if args.write_docs:
        info = machine() | {"CPU": f"{machine()['CPU'].split(',')[0]}, {os.cpu_count()} cores ({cores})"}
        write(rows, "\n".join(f"- {key}: {value}" for key, value in info.items()))
        print(f"\nwrote {DOCS.relative_to(REPO)}")
    return 0


def replace_section(marker: str, body: str) -> None:
    """Put ``marker`` + ``body`` in docs/benchmarks.md in place of that marker's old section (up
    to the next marker), or at the end; the other sections are kept as they are."""
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if marker in text:
        before, after = text.split(marker, 1)
        rest = after.find("\n" + SECTION_START)
        after = after[rest + 1:] if rest >= 0 else ""
    else:
        before, after = text, ""
    DOCS.write_text(before.rstrip() + "\n\n" + marker + "\n" + body.strip() + "\n" + ("\n" + after if after else ""))


def write_docs(rows: list[Row], info: dict[str, str], quick: bool) -> None:
    about = "\n".join(f"- {key}: {value}" for key, value in info.items())
    old = DOCS.read_text() if DOCS.exists() else ""
    markers = (DETECT_MARKER, PORTRAITS_MARKER, STABILIZE_MARKER, RECONSTRUCT_MARKER, CLASSIFY_MARKER,
               DIFFUSION_MARKER, RAY_MARKER, BACKENDS_MARKER)
    first = min((old.find(m) for m in markers if m in old), default=-1)
    portraits = old[first:] if first >= 0 else ""  # the other scripts' sections, kept as they are
    DOCS.write_text(f"""# Benchmarks

Written by `.venv/bin/python benchmarks/run.py --write-docs`{" with BENCH_QUICK=1" if quick else ""}
(`make bench` prints the same without writing this file; `BENCH_QUICK=1 make bench` compares
1 and 3 minutes in the memory test). Every ratio compares numbers measured in that one run.
Where facecli's time goes: `.venv/bin/python benchmarks/profile_landmarks.py [--close-up-720p]`.

{about}

{markdown_table(rows)}

## How it is measured

- The benchmark process pins itself to one CPU, A (`os.sched_setaffinity`), before it starts
  any thread or child; MediaPipe's threads and the `facecli` subprocesses inherit that one
  core, and the check that no thread of the process is allowed off A is printed.
- Speed (the example and 720p) is measured in two placements, each with facecli and the raw
  engine in the same run; a ratio only ever compares the two within one placement:
  - **one core** (metrics without a tag): the ffmpeg decoder inherits core A too, so
    decoding competes with the face work for the one core, as on a one-core worker.
  - **decoder on 2nd core** (metrics tagged `[decoder on 2nd core]`): the face work stays
    on A and every ffmpeg that facecli starts (probe and decoder) runs on another CPU, B.
    facecli finds ffmpeg only through `facecli.media.ffmpeg_exe()`, which honours
    `IMAGEIO_FFMPEG_EXE`: the benchmark points it at a script `exec taskset -c B ffmpeg "$@"`
    (clearing that function's cache on the way in and out), so the decoder keeps the pid
    facecli started and reaps. During each workload's untimed warm-up run a thread reads
    `Cpus_allowed_list` from `/proc/PID/status` of every ffmpeg child; the run stops unless
    each one seen is on B alone.
  - Why both: the targets ("facecli >= 0.8 x the raw engine", ">= 100 frames/s for one 720p
    face on one core") do not say where decoding runs. On a one-core worker the decode cost
    is part of every frame; on a 2-core laptop the decoder is its own process on the other
    core, so a frame costs the face work alone as long as the decoder keeps ahead. The one-core
    rows are the strict reading, the 2nd-core rows the laptop one.
- **facecli**: `facecli.stages.landmarks.landmarks_file` with default options (decode,
  detection keyframes, mesh tracking, head pose, parquet), timed from call to return.
- **raw N**: `mp.solutions.face_mesh.FaceMesh(static_image_mode=False,
  refine_landmarks=True, max_num_faces=N)` on every whole frame from the same
  `facecli.media.iter_frames`, with ffmpeg converting whole frames to RGB (rgb24: the fastest
  way to whole RGB frames; facecli decodes yuv420p and converts only the crops it fits, see
  `facecli.media.YuvImage`), each result converted to a numpy array; building and closing
  the mesh is inside the timing, as facecli's set-up is in its own. N=2 is facecli's job size
  on the example (it also tracks the background face).
- Each workload runs once untimed (imports, first graph), then 3 times interleaved; rates use
  the median. facecli's untimed first run is reported as the cold start.
- Face-fits/s counts faces fitted per second (facecli's output rows; the raw engine's returned faces).
- 720p: the example's close-up shot (frames 200-269) scaled and padded to 1280x720, played
  forward then backward (a plain loop would add a hard cut, hence a rescan, every 70 frames)
  and looped to 300 frames, H.264.
- Memory: the example looped by stream copy to 1 and 10 minutes, `facecli landmarks VIDEO
  -o DIR -q` in a child process. "facecli peak" is the kernel's high-water mark of that
  process's RSS (VmHWM; `ru_maxrss` is not used: Linux carries the spawning process's size
  into a child's maxrss at exec, so every child of a 500 MB benchmark reads >= 500 MB);
  "tree peak" is the largest sum of facecli's and ffmpeg's RSS seen by sampling /proc every
  0.2 s. "growth per 1000 frames" is the tree peak's rise after the first 30 s of the long
  run: a slow leak shows there even when the long/short ratio passes.
- CPU figures beside the ratios use CPU time (this process's threads and its reaped ffmpeg
  child) instead of wall time: on a shared machine the pinned core also runs other people's
  work, which inflates wall time but not CPU time. With the decoder on a 2nd core the CPU time
  adds up both cores, so CPU frames/s can fall below wall frames/s there. PASS/MISS is judged on
  wall time; "(noisy)" marks a ratio whose wall times spread over 15%.
- The memory test runs in the one-core placement only.

{portraits}""")
    print(f"\nwrote {DOCS.relative_to(REPO)}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-docs", action="store_true", help=f"also write the table to {DOCS.relative_to(REPO)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per workload (median taken)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick = os.environ.get("BENCH_QUICK", "0") not in ("", "0")
    cpu, other_cpus = pin_one_core()
    print(f"pinned to CPU {cpu} of {os.cpu_count()}; child processes (ffmpeg decoders, facecli runs) inherit it")
    where_all = placements(cpu, other_cpus)
    if len(where_all) > 1:
        print(f"sections 1 and 2 run twice: {' | '.join(w.title for w in where_all)}")
    else:
        print("one CPU only (or no taskset): no run with the decoder on a 2nd core")
    load_before = load_average()
    print(f"load average before: {load_before} (other work on this machine shows up as spread)")
    folder = Path(tempfile.mkdtemp(prefix="facecli-bench-"))  # every generated file lives here, outside the repo
    try:
        rows = [row for where in where_all for row in bench_example(folder, args.repeats, where)]
        clip = make_720p_clip(folder)
        rows += [row for where in where_all for row in bench_720p(clip, folder, args.repeats, where)]
        clip.unlink()
        rows += bench_memory(folder, quick)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    section("summary")
    load_after = load_average()
    print(f"load average after: {load_after}")
    print(text_table(rows))
    if args.write_docs:
        info = machine() | {"load average (1/5/15 min), start -> end": f"{load_before} -> {load_after}"}
        write_docs(rows, info, quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
