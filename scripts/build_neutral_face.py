"""Build facecli/data/neutral_face.npz, the population neutral that blendshapes are measured
against when a person's own neutral is not known (a single image, a short track).

    .venv/bin/python scripts/build_neutral_face.py [IMAGE ...] [--out PATH]

Each image (default: Grace Hopper's portrait, relaxed with closed lips) and its horizontal flip
go through facecli's landmarks and :func:`facecli.face3d.metric_faces`; the flipped faces are
mirrored back, and the mean is made exactly left/right symmetric. See docs/reconstruct.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a plain script from a source checkout

from facecli import landmarks  # noqa: E402
from facecli.face3d import aligned_to_mean_face, metric_faces  # noqa: E402
from facecli.facemodel import MIRROR_INDEX  # noqa: E402
from facecli.geometry import camera_matrix  # noqa: E402

DEFAULT_IMAGES = (ROOT / "tests/data/grace_hopper.jpg",)


def mirrored(face_mm: np.ndarray) -> np.ndarray:
    """The face's mirror image about the head frame's x = 0 plane, points relabelled left/right."""
    return face_mm[MIRROR_INDEX] * (-1.0, 1.0, 1.0)


def head_face(image_path: Path, flip: bool) -> np.ndarray:
    """The largest face of an image in its head frame, mm."""
    image = cv2.imread(str(image_path))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "face.png"
        cv2.imwrite(str(path), image[:, ::-1] if flip else image)
        marks = landmarks(path)
    row = int(np.argmax(marks.box_xywh[:, 2]))
    height, width = image.shape[:2]
    faces = metric_faces(marks.landmarks_478[row:row + 1], marks.rotation_rad[row:row + 1],
                               marks.translation_mm[row:row + 1], camera_matrix(width, height))
    face = aligned_to_mean_face(faces)[0]
    return mirrored(face) if flip else face


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", type=Path, default=list(DEFAULT_IMAGES))
    parser.add_argument("--out", type=Path, default=ROOT / "facecli/data/neutral_face.npz")
    args = parser.parse_args(argv)
    faces = [head_face(path, flip) for path in args.images for flip in (False, True)]
    mean = np.mean(faces, axis=0)
    symmetric = (mean + mirrored(mean)) / 2
    sources = "; ".join(f"{p.relative_to(ROOT) if p.is_relative_to(ROOT) else p} (+ flipped)" for p in args.images)
    np.savez_compressed(args.out, vertices_mm=symmetric, sources=np.array(sources))
    print(f"wrote {args.out}: {len(faces)} faces from {sources}")


if __name__ == "__main__":
    main()
