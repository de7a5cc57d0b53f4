"""facecli reconstruct benchmarks (``make bench``): speed against landmarks alone, and the
accuracy figures the tests check (reprojection, mirror test, known poses).

Speed: frames per second of ``reconstruct`` (landmarks included, default options) on the
example video, against the landmarks stage alone on the same video, in the same run, best of 3
after a warm-up. Target: >= 0.7.

    .venv/bin/python benchmarks/reconstruct_bench.py [--write-docs]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import facecli  # noqa: F401 - first: it sets up NumPy's thread pool before NumPy loads

from run import RECONSTRUCT_MARKER, REPO, Row, markdown_table, replace_section, run_benches, section
from stabilize_bench import EXAMPLE, speed_against_landmarks

from facecli import media
from facecli.stages.reconstruct import ReconstructOptions, reconstruct, reconstruct_file

sys.path.insert(0, str(REPO))
from tests.stages.test_reconstruct import (  # noqa: E402
    KNOWN_POSES_DEG, MIRRORED, _texture, projected_68, render_mean_face)

PORTRAIT = REPO / "examples" / "portrait.png"
MIN_RATIO = 0.7


def bench_speed(folder: Path) -> list[Row]:
    section("reconstruct against landmarks alone (best of 3, after a warm-up)")
    return speed_against_landmarks(
        "reconstruct", lambda: reconstruct_file(EXAMPLE, folder / "Megamind.reconstruct.parquet", ReconstructOptions()),
        folder, MIN_RATIO)


def reprojection() -> list[Row]:
    section("reprojection: projected mesh vs the 68 landmarks, share of the inter-ocular distance")
    rows = []
    for path in (PORTRAIT, EXAMPLE):
        table = reconstruct(path)
        iod = np.linalg.norm(table.landmarks_68[:, 36:42].mean(1) - table.landmarks_68[:, 42:48].mean(1), axis=1)
        error = (np.linalg.norm(projected_68(table) - table.landmarks_68, axis=2).max(axis=1) / iod).max()
        rows.append(Row(f"reprojection, worst point, {path.name}", f"{100 * error:.2g}% IOD", "<= 1.5%",
                        "PASS" if error <= 0.015 else "MISS"))
        print(f"  {path.name}: {100 * error:.3g}%")
    return rows


def mirror(folder: Path) -> list[Row]:
    section("mirror test on the example portrait")
    flipped = folder / "flipped.png"
    media.write_image(flipped, np.ascontiguousarray(media.read_image(PORTRAIT)[:, ::-1]))
    a, b = reconstruct(PORTRAIT), reconstruct(flipped)
    yaw = abs(a.head_pose_deg[0, 0] + b.head_pose_deg[0, 0])
    names = list(MIRRORED)
    worst = max(abs(a.blendshapes[0, i] - b.blendshapes[0, names.index(MIRRORED[n])]) for i, n in enumerate(names))
    print(f"  yaw + mirrored yaw {yaw:.2f} deg, worst blendshape difference {worst:.3f}")
    return [Row("mirror: |yaw + flipped yaw|", f"{yaw:.2f} deg", "<= 1 deg", "PASS" if yaw <= 1 else "MISS"),
            Row("mirror: worst left/right blendshape difference", f"{worst:.3f}", "<= 0.1",
                "PASS" if worst <= 0.1 else "MISS")]


def known_poses(folder: Path) -> list[Row]:
    section("known poses: the textured mean face rendered by the preview rasterizer")
    texture = _texture(PORTRAIT)
    errors = []
    for angles in KNOWN_POSES_DEG:
        got = np.degrees(reconstruct(render_mean_face(texture, angles, folder / "pose.png")).rotation_rad[0])
        errors.append(np.abs(got - angles))
        print(f"  true (rx, ry, rz) {angles}: recovered {np.round(got, 1)}")
    errors = np.array(errors)
    worst = errors.max(axis=0)
    return [Row("known poses: worst error pitch | yaw | roll", " | ".join(f"{w:.1f} deg" for w in worst),
                "<= 2 deg", "PASS" if worst.max() <= 2 else "MISS"),
            Row("known poses: median error (all axes)", f"{np.median(errors):.1f} deg")]


def write_docs(rows: list[Row], about: str) -> None:
    replace_section(RECONSTRUCT_MARKER, f"""
## reconstruct

Written by `.venv/bin/python benchmarks/reconstruct_bench.py --write-docs` (`make bench` runs it).
Speed on the example video, the whole machine; both runs in this one process, best of 3 after a
warm-up. The accuracy rows repeat the checks of tests/stages/test_reconstruct.py on the example
portrait and video.

{about}

{markdown_table(rows)}
""")


def main(argv: list[str] | None = None) -> int:
    return run_benches(__doc__, "facecli-reconstruct-bench-",
                       lambda folder: bench_speed(folder) + reprojection() + mirror(folder) + known_poses(folder),
                       write_docs, argv)


if __name__ == "__main__":
    sys.exit(main())
