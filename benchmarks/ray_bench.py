"""facecli --executor ray benchmark (``make bench``): the same batches under the local process
pool and under Ray, with the same number of workers, in one run.

1. A batch of example videos through ``facecli landmarks``: wall time under Ray / local
   (target: <= 1.2).
2. Many tiny files through ``facecli detect``: the per-task overhead in ms, (Ray wall - local
   wall) / files, and the fixed cost of one run (one tiny file).
3. The example video through ``facecli detect`` (default options, whose scan tiles make it the
   slowest stage per frame) whole and with ``--chunk-seconds 2``: the speed-up of chunking.

Ray runs on a cluster started here for the whole benchmark with as many CPUs as the local pool
has workers; every facecli run is a fresh command that joins it with ``--address`` (as
``--address auto`` joins a running cluster), so both executors pay Python start, imports and
their workers' start in every run. Runs alternate local/Ray; each figure is the median of 3.

    .venv/bin/python benchmarks/ray_bench.py [--write-docs]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from run import RAY_MARKER, REPO, Row, facecli_command, markdown_table, replace_section, run_benches, section

EXAMPLE = REPO / "examples" / "Megamind.avi"
WORKERS = 2
VIDEOS = 6
TINY_FILES = 200
REPEATS = 3
MAX_RATIO = 1.2


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([*facecli_command(), *args, "-q", "--overwrite"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"facecli {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return time.perf_counter() - start


def median_pair(local: Callable[[], float], ray: Callable[[], float]) -> tuple[float, float]:
    """Median wall times of two alternating workloads, after one untimed run of each."""
    local(), ray()
    times = [(local(), ray()) for _ in range(REPEATS)]
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def make_batch(folder: Path) -> tuple[list[Path], list[Path]]:
    from PIL import Image

    videos = []
    for k in range(VIDEOS):
        videos.append(folder / f"clip{k}.avi")
        shutil.copy(EXAMPLE, videos[-1])
    tiny = folder / "tiny"
    tiny.mkdir()
    with Image.open(REPO / "tests" / "data" / "grace_hopper.jpg") as image:
        face = image.crop((130, 110, 410, 390)).resize((96, 96))  # one 64 px face
    for k in range(TINY_FILES):
        face.save(tiny / f"face{k:03d}.png")
    return videos, sorted(tiny.iterdir())


def bench(folder: Path) -> list[Row]:
    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    videos, tiny = make_batch(folder)
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    started = time.perf_counter()
    ray.init(num_cpus=WORKERS, include_dashboard=False, logging_level="ERROR", _temp_dir=temp)
    start_s = time.perf_counter() - started
    address = ray.get_runtime_context().gcs_address
    local, on_ray = ["-j", str(WORKERS)], ["--executor", "ray", "--address", address]
    try:
        rows = batch_rows(videos, folder, local, on_ray) + overhead_rows(tiny, folder, local, on_ray)
        started_row = Row("Ray start on this machine (once per cluster)", f"{start_s:.1f} s")
        return [*rows, *chunk_rows(folder, on_ray), started_row]
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def batch_rows(videos: list[Path], folder: Path, local: list[str], on_ray: list[str]) -> list[Row]:
    section(f"1. landmarks of {VIDEOS} example videos, {WORKERS} workers: local vs Ray, median of {REPEATS}")
    args = ["landmarks", *map(str, videos), "-o", str(folder / "marks")]
    local_s, ray_s = median_pair(lambda: timed([*args, *local]), lambda: timed([*args, *on_ray]))
    ratio = ray_s / local_s
    frames = 270 * VIDEOS
    print(f"  local {local_s:.2f} s, Ray {ray_s:.2f} s: {ratio:.2f}", flush=True)
    return [Row(f"landmarks, {VIDEOS} videos ({frames} frames): wall local | Ray", f"{local_s:.2f} | {ray_s:.2f} s"),
            Row("landmarks batch: wall Ray / local", f"{ratio:.2f}", f"<= {MAX_RATIO}",
                "PASS" if ratio <= MAX_RATIO else "MISS")]


def overhead_rows(tiny: list[Path], folder: Path, local: list[str], on_ray: list[str]) -> list[Row]:
    section(f"2. detect of {len(tiny)} tiny images, {WORKERS} workers: per-task overhead, median of {REPEATS}")
    many = ["detect", str(tiny[0].parent), "-o", str(folder / "tiny_out")]
    one = ["detect", str(tiny[0]), "-o", str(folder / "one_out")]
    local_s, ray_s = median_pair(lambda: timed([*many, *local]), lambda: timed([*many, *on_ray]))
    local_one, ray_one = median_pair(lambda: timed([*one, *local]), lambda: timed([*one, *on_ray]))
    per_task_ms = 1000 * ((ray_s - ray_one) - (local_s - local_one)) / (len(tiny) - 1)
    print(f"  {len(tiny)} files: local {local_s:.2f} s, Ray {ray_s:.2f} s; one file: local {local_one:.2f} s, "
          f"Ray {ray_one:.2f} s; per task {per_task_ms:+.1f} ms", flush=True)
    return [Row(f"detect, {len(tiny)} tiny images: wall local | Ray", f"{local_s:.2f} | {ray_s:.2f} s"),
            Row("one tiny image (fixed cost of a run): wall local | Ray", f"{local_one:.2f} | {ray_one:.2f} s"),
            Row("Ray per-task overhead over local", f"{per_task_ms:+.1f} ms")]


def chunk_rows(folder: Path, on_ray: list[str]) -> list[Row]:
    section(f"3. detect of the example video (default options) on Ray, whole vs --chunk-seconds 2, "
            f"{WORKERS} CPUs, median of {REPEATS}")
    args = ["detect", str(EXAMPLE), "-o", str(folder / "chunks"), *on_ray]
    whole_s, chunked_s = median_pair(lambda: timed(args), lambda: timed([*args, "--chunk-seconds", "2"]))
    print(f"  whole {whole_s:.2f} s, chunked {chunked_s:.2f} s: x{whole_s / chunked_s:.2f}", flush=True)
    return [Row("detect example, default options: frames/s, one task", f"{270 / whole_s:.1f}"),
            Row(f"detect example: wall whole | --chunk-seconds 2 ({WORKERS} CPUs)",
                f"{whole_s:.2f} | {chunked_s:.2f} s"),
            Row("detect example: speed-up of --chunk-seconds 2", f"x{whole_s / chunked_s:.2f}")]


def write_docs(rows: list[Row], about: str) -> None:
    replace_section(RAY_MARKER, f"""
## --executor ray

Written by `.venv/bin/python benchmarks/ray_bench.py --write-docs` (`make bench` runs it).
The same batches under the local process pool (`-j {WORKERS}`) and under Ray (a cluster started
here with {WORKERS} CPUs, joined by each run with `--address`), alternating, median of {REPEATS}
after one untimed run of each; every run is a whole `facecli` command (Python start, imports,
workers' start included). Per-task overhead: the extra wall time of Ray over local on
{TINY_FILES} tiny images (one 64 px face each), less the same difference on one image (the
fixed cost of a run), per file; the batch ratio includes that fixed cost once. The chunked
run: the example video whole and in parts starting at its cuts (4 parts of 46 to 98 frames, 2
at a time: the longest part bounds the speed-up); "frames/s, one task" is the whole run's 270
frames over its wall time, Ray's fixed cost included.

{about}

{markdown_table(rows)}
""")


if __name__ == "__main__":
    sys.exit(run_benches(__doc__, "facecli-ray-bench-", bench, write_docs, cores=f"{WORKERS} workers"))
