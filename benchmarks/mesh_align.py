"""Mesh stabilization error: IRLS Kabsch with the MediaPipe prior or data-driven weights, against
plain Kabsch on all vertices.

A seeded synthetic set (tests/test_rigid_align.py): facecli's mean face (478 points) under
random rigid motions (rotations up to 20 degrees a side, shifts up to 30 mm), a quarter of the
meshes neutral, the rest with a random mix of jaw opening, smile, brow raise and puffed cheeks,
plus 0.2 mm Gaussian noise. Every mesh is aligned to the reference mesh (``--ref``, default the
first neutral one; an expressive reference biases every plain Kabsch fit). Errors: rotation (degrees, angle
of R_est^T R_true) and translation (mm, mean distance between where the estimate and the truth
put the skull points), mean and 95th percentile.

Run: python benchmarks/mesh_align.py [--count N] [--seed S] [--ref INDEX] [--markdown]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facecli import rigid_align  # noqa: E402
from tests.test_rigid_align import pose_errors, synthetic_set  # noqa: E402

COLUMNS = ("method", "frames", "rot mean (deg)", "rot p95 (deg)", "shift mean (mm)", "shift p95 (mm)")


def methods(meshes: np.ndarray, ref: int) -> dict[str, tuple[list[rigid_align.RigidTransform], float]]:
    """Each method's transforms and its time per mesh (ms)."""
    runs = {
        "IRLS, MediaPipe prior": lambda: rigid_align.stabilize_meshes(list(meshes), ref),
        "IRLS, data-driven weights": lambda: rigid_align.stabilize_meshes(
            list(meshes), ref, user_weights=rigid_align.spread_weights(meshes, ref)),
        "Kabsch, all vertices": lambda: [rigid_align.kabsch_all(v, meshes[ref]) for v in meshes],
    }
    out = {}
    for name, run in runs.items():
        start = time.perf_counter()
        transforms = run()
        out[name] = transforms, 1e3 * (time.perf_counter() - start) / len(meshes)
    return out


def stats(errors: np.ndarray) -> tuple[float, float]:
    return float(errors.mean()), float(np.percentile(errors, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ref", type=int, help="reference mesh index (default: the first neutral mesh)")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args()
    synth = synthetic_set(args.count, args.seed)
    ref = int(np.argmin(synth.expressive)) if args.ref is None else args.ref
    rows, expressive, timings = [], {}, {}
    for name, (transforms, ms) in methods(synth.meshes, ref).items():
        rot, shift = pose_errors(transforms, synth, ref)
        timings[name] = ms
        for label, mask in (("neutral", ~synth.expressive), ("expressive", synth.expressive)):
            mask = mask & (np.arange(args.count) != ref)
            values = (*stats(rot[mask]), *stats(shift[mask]))
            rows.append((name, f"{label} ({mask.sum()})", *values))
            if label == "expressive":
                expressive[name] = values
    baseline = expressive.pop("Kabsch, all vertices")
    ratios = [(f"Kabsch / {name}", "expressive", *(b / o for b, o in zip(baseline, ours)))
              for name, ours in expressive.items()]
    kind = "expressive" if synth.expressive[ref] else "neutral"
    print(f"{args.count} meshes, seed {args.seed}, reference mesh {ref} ({kind}); ms per mesh: "
          + ", ".join(f"{name} {ms:.2f}" for name, ms in timings.items()))
    table(rows, args.markdown, "{:.3f}")
    print()
    table(ratios, args.markdown, "{:.1f}x")


def table(rows: list[tuple], markdown: bool, number: str) -> None:
    cells = [list(COLUMNS)] + [[*row[:2], *(number.format(v) for v in row[2:])] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    for k, row in enumerate(cells):
        if markdown:
            print("| " + " | ".join(row) + " |")
            if k == 0:
                print("|" + "|".join("---" if i < 2 else "---:" for i in range(len(row))) + "|")
        else:
            print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    main()
