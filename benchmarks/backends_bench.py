"""facecli optional backends benchmark (``make bench``): frames per second of each backend whose
real weights are in the model folder, on the example video, against the MediaPipe default in the
same run.

Runs only the backends whose weights are present (``facecli models download NAME``; the tests'
tiny models would time nothing real) and says which were skipped and why. Whole machine: each
backend uses what its runtime takes (onnxruntime, torch).

    .venv/bin/python benchmarks/backends_bench.py [--write-docs]
    FACECLI_MODELS=/data/models .venv/bin/python benchmarks/backends_bench.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import facecli  # first: it sets up NumPy's thread pool before NumPy loads
from run import BACKENDS_MARKER, REPO, Row, markdown_table, replace_section, run_benches, section

from facecli.backends import models

VIDEO = REPO / "examples" / "Megamind.avi"
# (label, function, options, the default it is compared with, (pack, weights) it needs)
RUNS = [
    ("detect mediapipe", facecli.detect, {}, None, None),
    ("detect insightface", facecli.detect, {"backend": "insightface"}, "detect mediapipe",
     ("buffalo_l", models.INSIGHTFACE_DETECTOR)),
    ("detect mediapipe --embed", facecli.detect, {"embed": True}, "detect mediapipe",
     ("buffalo_l", models.INSIGHTFACE_EMBEDDING)),
    ("landmarks mediapipe", facecli.landmarks, {}, None, None),
    ("landmarks insightface", facecli.landmarks, {"backend": "insightface"}, "landmarks mediapipe",
     ("buffalo_l", models.INSIGHTFACE_LANDMARKS)),
    ("landmarks insightface106", facecli.landmarks, {"backend": "insightface106"}, "landmarks mediapipe",
     ("buffalo_l", models.INSIGHTFACE_LANDMARKS_106)),
    ("landmarks fan", facecli.landmarks, {"backend": "fan"}, "landmarks mediapipe", ("fan", models.FAN_2D)),
    ("landmarks fan3d", facecli.landmarks, {"backend": "fan3d"}, "landmarks mediapipe", ("fan3d", models.FAN_3D)),
]


def frames_per_second(function, options: dict) -> tuple[float, int]:
    function(VIDEO, **options)  # warm-up: imports, sessions, first graphs
    start = time.perf_counter()
    rows = function(VIDEO, **options)
    return rows.header["source"]["frame_count"] / (time.perf_counter() - start), len(rows)


def bench(folder: Path) -> list[Row]:
    section(f"backends on {VIDEO.name}, weights from {models.model_dir()}")
    rates: dict[str, float] = {}
    rows = []
    for label, function, options, baseline, needs in RUNS:
        if needs is not None and models.locate(*needs) is None:
            reason = f"skipped: no {needs[1].name} (facecli models download {needs[0]})"
            print(f"  {label}: {reason}", flush=True)
            rows.append(Row(f"{label}: frames/s", reason))
            continue
        rates[label], count = frames_per_second(function, options)
        print(f"  {label}: {rates[label]:.1f} frames/s, {count} rows", flush=True)
        versus = f" ({rates[label] / rates[baseline]:.2f} x {baseline})" if baseline else ""
        rows.append(Row(f"{label}: frames/s", f"{rates[label]:.1f}{versus}"))
    return rows


def write_docs(rows: list[Row], about: str) -> None:
    replace_section(BACKENDS_MARKER, f"""
## optional backends

Written by `.venv/bin/python benchmarks/backends_bench.py --write-docs`. Frames per second of
`facecli.detect` / `facecli.landmarks` on the example video (second run, after a warm-up) for
each backend whose real weights are in the model folder, against MediaPipe in the same run.
No real weights can be had on this machine, nor on the lent GPU machine (neither reaches the
network), so here the optional rows say skipped: run it where your weights are.

{about}

{markdown_table(rows)}
""")


if __name__ == "__main__":
    sys.exit(run_benches(__doc__, "facecli-backends-bench-", bench, write_docs))
