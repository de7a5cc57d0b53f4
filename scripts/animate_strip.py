"""A strip of frames around the face of a talking-portrait video (the README's picture).

    .venv/bin/python scripts/animate_strip.py examples/out/portrait.mp4 docs/images/animate_strip.jpg
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

import facecli
from facecli.media import iter_frames

FRAMES = 8
TILE_PX = 200


def main(video: str, out: str) -> None:
    marks = facecli.landmarks(video)
    x, y, w, h = marks.box_xywh[len(marks) // 2]
    side = 1.5 * max(w, h)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(cx - side / 2), int(cy - side / 2)
    total = len(marks)
    wanted = set(np.linspace(total * 0.1, total * 0.9, FRAMES).astype(int).tolist())
    tiles = []
    for frame in iter_frames(video):
        if frame.index in wanted:
            crop = frame.image[max(y0, 0): y0 + int(side), max(x0, 0): x0 + int(side)]
            tiles.append(cv2.resize(crop, (TILE_PX, TILE_PX), interpolation=cv2.INTER_AREA))
    Image.fromarray(np.concatenate(tiles, axis=1)).save(Path(out), quality=85)


if __name__ == "__main__":
    main(*sys.argv[1:3])
