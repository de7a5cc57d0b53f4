"""facecli detect benchmarks (``make bench``): keyframe scans with faces followed between them,
against a full scan of every frame, on the same videos in the same run.

Speed: frames per second of ``detect_file`` with default options (full scans on keyframes:
every 10 processed frames, a shot's start until a face shows, and wherever a followed face is
not found again; each face found again near its last box in between) against ``--scan-every 1``
(a full scan of every frame: whole-frame BlazeFace short and full range plus full-range tiles
at a few scales), on the example video (also with `--min-score 0.8` for both) and on run.py's
720p clip of one face, best of 3 after a warm-up, the whole machine. Agreement: of the faces the
every-frame scan finds, the share whose centre lies in a box of the default run on the same
frame, and the median IoU of those boxes.

    .venv/bin/python benchmarks/detect_bench.py [--write-docs]
"""

from __future__ import annotations

import sys
from pathlib import Path

import facecli  # noqa: F401 - first: it sets up NumPy's thread pool before NumPy loads
import numpy as np
from run import DETECT_MARKER, REPO, Row, markdown_table, replace_section, run_benches, section
from stabilize_bench import best_of
from workloads import make_close_up_720p

from facecli import formats, media
from facecli.geometry import box_centres, box_iou, points_in_boxes
from facecli.stages.detect import DetectOptions, detect_file
from facecli.stages.landmarks import LandmarkOptions, landmarks_file

EXAMPLE = REPO / "examples" / "Megamind.avi"


def agreement(followed_file: Path, scanned_file: Path) -> tuple[float, float]:
    """(share of every-frame scan faces inside a followed box, median IoU with the best such box)."""
    followed, scanned = formats.read_table(followed_file), formats.read_table(scanned_file)
    inside, ious = [], []
    for index, box, centre in zip(scanned.frame_index, scanned.box_xywh, box_centres(scanned.box_xywh)):
        boxes = followed.box_xywh[followed.frame_index == index]
        inside.append(bool(points_in_boxes(centre, boxes).any()))
        ious.append(float(box_iou(box, boxes).max()) if len(boxes) else 0.0)
    return float(np.mean(inside)), float(np.median(ious))


def bench_video(name: str, video: Path, folder: Path, min_score: float = 0.5) -> list[Row]:
    frames = media.probe(video).frame_count
    out = {mode: folder / f"{mode}.faces.parquet" for mode in ("followed", "scanned")}
    runs = {"followed": DetectOptions(min_score=min_score), "scanned": DetectOptions(min_score=min_score, scan_every=1)}
    detect_file(video, out["followed"], runs["followed"])  # warm-up: graphs built, file cached
    seconds = {mode: best_of(3, lambda m=mode: detect_file(video, out[m], runs[m])) for mode in runs}
    alone = best_of(3, lambda: landmarks_file(video, folder / "alone.landmarks.parquet", LandmarkOptions()))
    share, iou = agreement(out["followed"], out["scanned"])
    fps = {mode: frames / s for mode, s in seconds.items()}
    print(f"  {name}: default {fps['followed']:.1f} frames/s, every frame scanned {fps['scanned']:.1f}, "
          f"landmarks {frames / alone:.1f}; scan faces inside a default box {share:.1%}, median IoU {iou:.2f}",
          flush=True)
    return [Row(f"{name}: detect frames/s, default | --scan-every 1", f"{fps['followed']:.1f} | {fps['scanned']:.1f}"),
            Row(f"{name}: detect default / --scan-every 1 (frames/s)", f"{fps['followed'] / fps['scanned']:.1f}"),
            Row(f"{name}: landmarks frames/s (detection keyframes + mesh)", f"{frames / alone:.1f}"),
            Row(f"{name}: every-frame scan's faces inside a default box", f"{share:.1%}"),
            Row(f"{name}: median IoU of those boxes", f"{iou:.2f}")]


def benches(folder: Path) -> list[Row]:
    section("detect: default (keyframe scans, faces followed) against a full scan of every frame")
    return (bench_video("example", EXAMPLE, folder) + bench_video("example --min-score 0.8", EXAMPLE, folder, 0.8)
            + bench_video("720p", make_close_up_720p(EXAMPLE, folder), folder))


def write(rows: list[Row], about: str) -> None:
    replace_section(DETECT_MARKER, f"""
## detect

Written by `.venv/bin/python benchmarks/detect_bench.py --write-docs` (`make bench` runs it).
{__doc__.split(chr(10) + chr(10), 2)[1]}

{about}

{markdown_table(rows)}
""")


if __name__ == "__main__":
    sys.exit(run_benches(__doc__, "facecli-detect-bench-", benches, write))
