"""The README's pictures: frames of a talking portrait, and source / driver / output of reenact.

    .venv/bin/python scripts/readme_images.py    # after `make demo`; writes docs/images/*.jpg
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

import facecli
from facecli.media import iter_frames, read_image

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "docs" / "images"
TILE_PX = 200


def face_tile(image: np.ndarray, box_xywh: np.ndarray) -> np.ndarray:
    """A square around the face box, TILE_PX wide."""
    x, y, w, h = box_xywh
    side = 1.5 * max(w, h)
    x0, y0 = int(max(x + w / 2 - side / 2, 0)), int(max(y + h / 2 - side / 2, 0))
    crop = image[y0: y0 + int(side), x0: x0 + int(side)]
    return cv2.resize(crop, (TILE_PX, TILE_PX), interpolation=cv2.INTER_AREA)


def frames_of(video: Path, wanted: list[int]) -> dict[int, np.ndarray]:
    return {f.index: f.image for f in iter_frames(video) if f.index in wanted}


def strip(video: Path, count: int = 8) -> np.ndarray:
    """``count`` frames around the face, evenly through the video."""
    marks = facecli.landmarks(video)
    wanted = np.linspace(0.1 * len(marks), 0.9 * len(marks), count).astype(int).tolist()
    images = frames_of(video, wanted)
    box = marks.box_xywh[len(marks) // 2]
    return np.concatenate([face_tile(images[i], box) for i in wanted], axis=1)


def reenact_grid(source: Path, driving: Path, count: int = 6) -> np.ndarray:
    """Left: the source; top row: driving frames; bottom row: the output's same frames."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "driven.mp4"
        facecli.reenact(source, driving, out, crop=True)
        drive = facecli.landmarks(driving)
        drive = drive[drive.face_id == np.bincount(drive.face_id).argmax()]
        wanted = np.linspace(drive.frame_index[5], drive.frame_index[-5], count).astype(int).tolist()
        driver_frames, output_frames = frames_of(driving, wanted), frames_of(out, wanted)
        output_box = facecli.landmarks(out).box_xywh[0]
    rows = []
    for frames, boxes in ((driver_frames, {int(f): b for f, b in zip(drive.frame_index, drive.box_xywh)}),
                          (output_frames, {i: output_box for i in wanted})):
        rows.append(np.concatenate([face_tile(frames[i], boxes[i]) for i in wanted], axis=1))
    still = read_image(source)
    first = face_tile(still, facecli.landmarks(source).box_xywh[0])
    column = np.concatenate([np.full_like(first, 255), first], axis=0)
    return np.concatenate([column, np.concatenate(rows, axis=0)], axis=1)


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip(REPO / "examples" / "out" / "portrait.mp4")).save(IMAGES / "animate_strip.jpg", quality=85)
    grid = reenact_grid(REPO / "examples" / "portrait.png", REPO / "examples" / "Megamind.avi")
    Image.fromarray(grid).save(IMAGES / "reenact_strip.jpg", quality=85)
    print(f"wrote {IMAGES / 'animate_strip.jpg'} and {IMAGES / 'reenact_strip.jpg'}")


if __name__ == "__main__":
    main()
