"""facecli ``--renderer diffusers`` benchmark: seconds per frame and flicker against the geometric renderer.

The example portrait cropped to 512 x 512, animated by 25 frames of a LibriVox clip's motion;
each frame rendered by the geometric renderer, then refined (``DiffusionRefiner``) with
``--refine-every`` 1 and 3. Reported: seconds per frame of each, and the flicker measure
(``facecli.diffusion.flicker``: the mean absolute difference between consecutive frames inside
the face mask, grey levels) of each against the geometric renderer's on the same frames.

Weights: those of the model folder in force (``$FACECLI_MODELS``, else ~/.cache/facecli/models)
where its diffusion folder is complete; else the tests' tiny random models (32 px, 2 denoising
steps), which measure the renderer's own overhead (crops, control image, mask, carry, a
pipeline call), not a real model's speed or quality.

    .venv/bin/python benchmarks/diffusion_bench.py [--write-docs]
    FACECLI_MODELS=/data/models .venv/bin/python benchmarks/diffusion_bench.py   # your weights
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import facecli  # noqa: F401 - first: it sets up NumPy's thread pool before NumPy loads
import numpy as np
from run import DIFFUSION_MARKER, REPO, Row, markdown_table, replace_section, run_benches, section

from facecli import diffusion
from facecli.backends import models
from facecli.motion import MotionOptions, generate_motion
from facecli.portrait import PortraitRenderer, load_portrait
from facecli.speech import analyse_speech

sys.path.insert(0, str(REPO))
from tests.tiny_diffusion import write_models  # noqa: E402

PORTRAIT = REPO / "examples" / "portrait.png"
CLIP = REPO / "tests" / "data" / "speech" / "sense_and_sensibility_01_austen_64kb-0880.wav"
FRAMES = 25


def _weights(folder: Path) -> str:
    """Which weights run: the user's where complete, else tiny ones written into ``folder``."""
    if diffusion.problem("mediapipe_face") is None:
        return f"the model folder's ({diffusion.folder()})"
    write_models(folder)
    os.environ[models.ENV_VAR] = str(folder)
    return "tiny random models (tests/tiny_diffusion.py): the renderer's overhead, not a real model's"


def _geometric() -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray], float]:
    """The portrait, its mesh, FRAMES geometric frames with their meshes, and seconds per frame."""
    portrait = load_portrait(PORTRAIT, crop=True, size=512)
    motion = generate_motion(analyse_speech(CLIP, "he was not an ill disposed young man"), MotionOptions())
    renderer = PortraitRenderer(portrait)
    frames, meshes = [], []
    start = time.perf_counter()
    for i in range(FRAMES):
        pose = (motion.face_controls[i], motion.head_pose_deg[i], motion.gaze_deg[i])
        frames.append(renderer.render(*pose))
        meshes.append(renderer.rig.pose(*pose))
    return portrait.image, portrait.landmarks_478, frames, meshes, (time.perf_counter() - start) / FRAMES


def bench(folder: Path) -> list[Row]:
    used = _weights(folder)
    section(f"--renderer diffusers on {FRAMES} frames at 512 x 512, weights: {used}")
    source, mesh, frames, meshes, geometric_s = _geometric()
    rows = [Row("geometric renderer: s per frame", f"{geometric_s:.4f}")]
    masks: list[np.ndarray] = []
    refined: dict[int, list[np.ndarray]] = {}
    for every in (1, 3):
        refiner = diffusion.DiffusionRefiner(source, mesh, diffusion.DiffusionOptions(refine_every=every))
        refiner.refine(frames[0], meshes[0])  # warm-up: first-call costs of torch
        refiner = diffusion.DiffusionRefiner(source, mesh, diffusion.DiffusionOptions(refine_every=every))
        start, refined[every], masks = time.perf_counter(), [], []
        for frame, points in zip(frames, meshes):
            refined[every].append(refiner.refine(frame, points))
            masks.append(refiner.last_mask)
        seconds = (time.perf_counter() - start) / FRAMES
        print(f"  refine every {every}: {seconds:.3f} s per frame", flush=True)
        rows.append(Row(f"diffusers, --refine-every {every}: s per frame (geometric frame not included)",
                        f"{seconds:.3f}"))
    plain = diffusion.flicker(frames, masks)
    rows.append(Row("flicker, geometric renderer (grey levels)", f"{plain:.2f}"))
    for every, video in refined.items():
        value = diffusion.flicker(video, masks)
        rows.append(Row(f"flicker, diffusers --refine-every {every} (x geometric)",
                        f"{value:.2f} ({value / plain:.2f})"))
    return rows


def write_docs(rows: list[Row], about: str) -> None:
    replace_section(DIFFUSION_MARKER, f"""
## animate / reenact --renderer diffusers

Written by `.venv/bin/python benchmarks/diffusion_bench.py --write-docs`. The example portrait
cropped to 512 x 512, 25 frames of the motion of LibriVox clip 0880; each frame from the
geometric renderer, then refined with the default settings (strength 0.3, 20 steps, seed 0,
mediapipe_face) and `--refine-every` 1 and 3 (after a warm-up frame). Flicker: the mean
absolute difference between consecutive frames inside the face mask (mask > 0.5), grey levels
(`facecli.diffusion.flicker`), against the geometric renderer's on the same frames.

**Not measured here: a real model's speed and quality.** No Stable Diffusion or ControlNet
weights can be had on this machine, so these rows come from the tests' tiny random models:
they price the renderer's own work per frame (crop, control image, mask, carry, one pipeline
call at 32 px), and their flicker is that of random weights, not of a real refinement. To
measure your weights, put them in your model folder (docs/backends.md) and run
`FACECLI_MODELS=/path/to/models .venv/bin/python benchmarks/diffusion_bench.py` on the machine
you will use (a CUDA GPU: fp16); judge the quality by eye on a rendered video, e.g.
`facecli animate examples/portrait.png examples/speech.wav -o out.mp4 --crop --renderer diffusers`.
The CUDA and fp16 path was checked once on a lent GPU, with the speed of SD 1.5-shaped random
weights: docs/backends.md.

{about}

{markdown_table(rows)}
""")


if __name__ == "__main__":
    sys.exit(run_benches(__doc__, "facecli-diffusion-bench-", bench, write_docs))
