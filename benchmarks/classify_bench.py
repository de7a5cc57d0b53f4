"""facecli classify benchmark (``make bench``): frames per second on a 720p video, landmarks
included, on one core, against the landmarks stage alone on the same clip in the same run.

Target: >= 100 frames/s. For comparison (published CPU figures, not measured here): py-feat
2.6-12 frames/s, LibreFace 2.7, OpenFace 2.0 about 13, OpenFace 3.0 about 26.

    .venv/bin/python benchmarks/classify_bench.py [--write-docs]
"""

from __future__ import annotations

import sys
from pathlib import Path

from placement import pin_one_core

CPU, _ = pin_one_core()  # before facecli, NumPy or MediaPipe start a thread: they inherit this core

import facecli  # noqa: E402,F401 - it sets up NumPy's thread pool before NumPy loads
from run import CLASSIFY_MARKER, Row, markdown_table, replace_section, run_benches, section  # noqa: E402
from stabilize_bench import EXAMPLE, best_of  # noqa: E402
from workloads import make_close_up_720p  # noqa: E402

from facecli.stages.classify import ClassifyOptions, classify_file  # noqa: E402
from facecli.stages.landmarks import LandmarkOptions, landmarks_file  # noqa: E402

MIN_FPS = 100.0


def bench(folder: Path) -> list[Row]:
    section(f"classify on a 720p clip, one core (CPU {CPU}), best of 3 after a warm-up")
    clip = make_close_up_720p(EXAMPLE, folder)
    frames = 300
    landmarks_file(clip, folder / "warm.landmarks.parquet", LandmarkOptions())
    ours = best_of(3, lambda: classify_file(clip, folder / "clip.classify.parquet", ClassifyOptions()))
    alone = best_of(3, lambda: landmarks_file(clip, folder / "clip.landmarks.parquet", LandmarkOptions()))
    fps, baseline = frames / ours, frames / alone
    print(f"  classify {fps:.1f} frames/s, landmarks alone {baseline:.1f} frames/s: {alone / ours:.2f}", flush=True)
    return [Row("classify 720p, one core: frames/s", f"{fps:.1f}", f">= {MIN_FPS:.0f}",
                "PASS" if fps >= MIN_FPS else "MISS"),
            Row("landmarks alone, same clip: frames/s", f"{baseline:.1f}"),
            Row("classify / landmarks alone (frames/s)", f"{alone / ours:.2f}")]


def write_docs(rows: list[Row], about: str) -> None:
    replace_section(CLASSIFY_MARKER, f"""
## classify

Written by `.venv/bin/python benchmarks/classify_bench.py --write-docs` (`make bench` runs it).
The 720p clip of section 2 (the example's close-up shot, 300 frames), the process pinned to one
core with everything it starts; `classify_file` with default options (landmarks included, no
preview), best of 3 after a warm-up; the landmarks stage alone on the same clip as baseline.
Published CPU figures for comparison, not measured here: py-feat 2.6-12 frames/s, LibreFace
2.7, OpenFace 2.0 about 13, OpenFace 3.0 about 26.

{about}

{markdown_table(rows)}
""")


if __name__ == "__main__":
    sys.exit(run_benches(__doc__, "facecli-classify-bench-", bench, write_docs, cores=f"pinned to CPU {CPU}"))
