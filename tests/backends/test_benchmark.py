"""Throughput of the optional backends on the example video, beside MediaPipe's in the same run.

Runs only with real weights in the model folder (facecli models download NAME); the tiny test
models would time nothing real. Print the table with ``pytest -s``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import facecli
from facecli.backends import models

VIDEO = Path(__file__).parents[2] / "examples" / "Megamind.avi"
# (label, function, options, weights it needs)
RUNS = [
    ("detect mediapipe", facecli.detect, {}, None),
    ("detect insightface", facecli.detect, {"backend": "insightface"}, ("buffalo_l", models.INSIGHTFACE_DETECTOR)),
    ("detect mediapipe --embed", facecli.detect, {"embed": True}, ("buffalo_l", models.INSIGHTFACE_EMBEDDING)),
    ("landmarks mediapipe", facecli.landmarks, {}, None),
    ("landmarks insightface", facecli.landmarks, {"backend": "insightface"},
     ("buffalo_l", models.INSIGHTFACE_LANDMARKS)),
    ("landmarks fan", facecli.landmarks, {"backend": "fan"}, ("fan", models.FAN_2D)),
    ("landmarks fan3d", facecli.landmarks, {"backend": "fan3d"}, ("fan3d", models.FAN_3D)),
]


def _real_weights_found() -> list[tuple]:
    return [run for run in RUNS if run[3] is None or models.locate(*run[3]) is not None]


@pytest.mark.slow
def test_benchmark_backends_against_mediapipe() -> None:
    runs = _real_weights_found()
    if len(runs) == 2:
        pytest.skip(f"no real weights in {models.model_dir()}: run facecli models download buffalo_l / fan / fan3d")
    lines = []
    for label, function, options, _ in runs:
        start = time.perf_counter()
        rows = function(VIDEO, **options)
        seconds = time.perf_counter() - start
        frames = rows.header["source"]["frame_count"]
        lines.append(f"{label:28s} {frames / seconds:7.1f} frames/s  {len(rows):5d} rows")
    print("\n" + "\n".join(lines))
