"""The dense mesh warp: points carry the image with them; the background stays put."""

from __future__ import annotations

import numpy as np
import pytest

from facecli.meshwarp import MeshWarp, ring


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured image, a cloud of moving points in its middle and a fixed ring around them."""
    rng = np.random.default_rng(0)
    image = (60 + rng.random((200, 240, 3)) * 130).astype(np.uint8)  # never pure red
    image = np.repeat(np.repeat(image[::4, ::4], 4, axis=0), 4, axis=1)[:200, :240]  # 4 px blocks
    image[95:105, 115:125] = (255, 0, 0)  # a red square at the centre
    moving = np.concatenate([ring(np.array([120.0, 100.0]), np.array([r, r]), 24) for r in (8, 20, 35)])
    fixed = ring(np.array([120.0, 100.0]), np.array([80.0, 80.0]), 32)
    return image, moving, fixed


def red_centre(image: np.ndarray) -> np.ndarray:
    mask = (image[..., 0] > 200) & (image[..., 1] < 50) & (image[..., 2] < 50)
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_no_motion_is_the_identity(scene):
    image, moving, fixed = scene
    out = MeshWarp(moving, fixed, 240, 200).warp(image, moving)
    assert np.array_equal(out, image)


def test_points_carry_the_image(scene):
    image, moving, fixed = scene
    warp = MeshWarp(moving, fixed, 240, 200)
    out = warp.warp(image, moving + [6.0, -4.0])
    assert red_centre(out) - red_centre(image) == pytest.approx([6.0, -4.0], abs=0.5)
    x0, y0, x1, y1 = warp.box
    outside = np.ones(image.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], image[outside])  # beyond the fixed ring nothing moves
    assert np.array_equal(out[100, 230], image[100, 230])


def test_large_local_motion_inverts_accurately(scene):
    """Only the inner points move, 8 px: the centre follows to within half a pixel."""
    image, moving, fixed = scene
    moved = moving.copy()
    moved[:24] += [0.0, 8.0]
    out = MeshWarp(moving, fixed, 240, 200).warp(image, moved)
    assert red_centre(out) - red_centre(image) == pytest.approx([0.0, 8.0], abs=0.5)
