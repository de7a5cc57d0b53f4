"""Build facecli/data/neutral_face.npz, the population neutral that blendshapes are measured
against when a person's own neutral is not known (a single image, a short track).

    .venv/bin/python scripts/build_neutral_face.py [IMAGE ...] [--out PATH]

Each image and its horizontal flip go through facecli's landmarks (mirror-averaged) and
:func:`facecli.face3d.metric_faces`, fitted onto the mean face's rigid points; the flipped faces
are mirrored back. The lower face (mouth, cheeks, jaw) is the mean of the ``--neutral`` images
(default: Grace Hopper's portrait, relaxed with closed lips); the upper face (eyes, brows) is
the mean of those and the ``--upper`` images (default: the smiling astronaut, whose eyes and
brows are at rest), blended across the nose. The result is made exactly left/right symmetric.
See docs/reconstruct.md.
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
from facecli.facemodel import MIRROR_INDEX, mean_face  # noqa: E402
from facecli.geometry import camera_matrix  # noqa: E402

NEUTRAL_IMAGES = (ROOT / "tests/data/grace_hopper.jpg",)
UPPER_IMAGES = (ROOT / "tests/data/astronaut.png",)


def mirrored(face_mm: np.ndarray) -> np.ndarray:
    """The face's mirror image about the head frame's x = 0 plane, points relabelled left/right."""
    return face_mm[MIRROR_INDEX] * (-1.0, 1.0, 1.0)


def head_face(image_path: Path, flip: bool) -> np.ndarray:
    """The largest face of an image in its head frame, mm."""
    image = cv2.imread(str(image_path))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "face.png"
        cv2.imwrite(str(path), image[:, ::-1] if flip else image)
        marks = landmarks(path, mirror_average=True)
    row = int(np.argmax(marks.box_xywh[:, 2]))
    height, width = image.shape[:2]
    faces = metric_faces(marks.landmarks_478[row:row + 1], marks.rotation_rad[row:row + 1],
                               marks.translation_mm[row:row + 1], camera_matrix(width, height))
    face = aligned_to_mean_face(faces)[0]
    return mirrored(face) if flip else face


def upper_face_weight() -> np.ndarray:
    """(478,) 1 at the eyes and above, 0 from the nose tip down, smooth in between."""
    v = mean_face().vertices_mm
    eyes, tip = v[[33, 263], 1].mean(), v[4, 1]
    return np.clip((tip - v[:, 1]) / (tip - eyes), 0.0, 1.0)


def mean_face_of(paths: list[Path]) -> np.ndarray:
    return np.mean([head_face(path, flip) for path in paths for flip in (False, True)], axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neutral", nargs="+", type=Path, default=list(NEUTRAL_IMAGES))
    parser.add_argument("--upper", nargs="*", type=Path, default=list(UPPER_IMAGES))
    parser.add_argument("--out", type=Path, default=ROOT / "facecli/data/neutral_face.npz")
    args = parser.parse_args(argv)
    lower = mean_face_of(args.neutral)
    upper = mean_face_of(args.neutral + args.upper)
    weight = upper_face_weight()[:, None]
    mean = weight * upper + (1.0 - weight) * lower
    symmetric = (mean + mirrored(mean)) / 2
    names = [str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in args.neutral + args.upper]
    sources = f"neutral: {', '.join(names[:len(args.neutral)])}; upper face also: {', '.join(names[len(args.neutral):])}"
    np.savez_compressed(args.out, vertices_mm=symmetric, sources=np.array(sources + " (each + flipped)"))
    print(f"wrote {args.out}: {sources}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
