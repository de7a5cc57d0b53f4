"""cProfile of facecli's landmarks stage, warm, on one core: where a frame's time goes.

    .venv/bin/python benchmarks/profile_landmarks.py [VIDEO] [--close-up-720p] [--top N] [--sort KEY]

VIDEO defaults to examples/Megamind.avi; --close-up-720p profiles run.py's 720p clip instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
from pathlib import Path

from run import EXAMPLE, pin_one_core


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", type=Path, default=EXAMPLE)
    parser.add_argument("--close-up-720p", action="store_true", help="profile the 1280x720 one-face clip")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--sort", default="tottime", help="pstats key: tottime, cumulative, ...")
    args = parser.parse_args(argv)
    cpu = pin_one_core()  # before the imports below start any thread
    from workloads import facecli_workload, make_close_up_720p

    folder = Path(tempfile.mkdtemp(prefix="facecli-profile-"))
    try:
        video = make_close_up_720p(EXAMPLE, folder) if args.close_up_720p else args.video
        workload = facecli_workload(video, folder)
        workload()  # warm-up: imports and first graphs are not what we look for
        profiler = cProfile.Profile()
        work = profiler.runcall(workload)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    stats = pstats.Stats(profiler)
    print(f"{video.name} on CPU {cpu}: {work.frames} frames, {work.fits} face fits, "
          f"{stats.total_tt:.2f} s under the profiler")
    stats.sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
