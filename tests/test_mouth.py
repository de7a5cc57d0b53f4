"""The mouth interior: a cavity where the lips part, the portrait's own teeth where it shows them."""

from __future__ import annotations

import numpy as np
import pytest

import facecli
from facecli.face_rig import LOWER_INNER_LIP, UPPER_INNER_LIP
from facecli.media import read_image, write_image
from facecli.mouth import MouthPainter
from facecli.portrait import Portrait, PortraitRenderer, load_portrait
from tests.conftest import ASTRONAUT
from tests.test_face_rig import controls


def gap_pixels(image: np.ndarray, points: np.ndarray, where: float) -> np.ndarray:
    """RGB along the mouth's middle third, at ``where`` (0 upper lip .. 1 lower lip) of the gap."""
    xs = np.arange(int(points[UPPER_INNER_LIP[3], 0]), int(points[UPPER_INNER_LIP[7], 0]))
    upper = np.interp(xs, points[UPPER_INNER_LIP, 0], points[UPPER_INNER_LIP, 1])
    lower = np.interp(xs, points[LOWER_INNER_LIP, 0], points[LOWER_INNER_LIP, 1])
    ys = np.round(upper + where * (lower - upper)).astype(int)
    return image[ys, xs].astype(float)


@pytest.fixture(scope="module")
def astronaut() -> Portrait:
    return load_portrait(ASTRONAUT)


def test_smiling_portrait_keeps_its_teeth(astronaut):
    painter = MouthPainter(astronaut.image, astronaut.landmarks_478)
    assert painter.has_teeth
    teeth = gap_pixels(astronaut.image, astronaut.landmarks_478, 0.3).mean()
    filled = gap_pixels(painter.source_for_warp(), astronaut.landmarks_478, 0.3).mean()
    assert teeth > 150 and filled < 0.7 * teeth  # the warp source hides them: closing shows no squeezed teeth
    renderer = PortraitRenderer(astronaut)
    wide = renderer.render(controls(jaw_open=1.0), np.zeros(3), np.zeros(2))
    moved = renderer.rig.pose(controls(jaw_open=1.0), np.zeros(3), np.zeros(2))
    assert gap_pixels(wide, moved, 0.15).mean() > 140  # upper teeth, moved with the upper lip
    assert gap_pixels(wide, moved, 0.6).mean() < 100  # the dark cavity behind them


def test_closed_lips_paint_nothing(astronaut):
    painter = MouthPainter(astronaut.image, astronaut.landmarks_478)
    renderer = PortraitRenderer(astronaut)
    rest_points = renderer.rig.pose(controls(), np.zeros(3), np.zeros(2))
    frame = renderer.warp.warp(renderer.source, np.concatenate(
        [rest_points[:, :2], renderer.rig.to_image(renderer.head_ring_mm)[:, :2]]))
    before = frame.copy()
    painter.paint(frame, rest_points)
    assert np.array_equal(frame, before)


def test_closed_mouth_portrait_gets_a_cavity_with_teeth_hint(tmp_path, astronaut):
    """The astronaut with her lips closed becomes a new portrait without visible teeth."""
    closed = PortraitRenderer(astronaut).render(controls(), np.zeros(3), np.zeros(2))
    write_image(tmp_path / "closed.png", closed)
    portrait = load_portrait(tmp_path / "closed.png")
    assert not MouthPainter(portrait.image, portrait.landmarks_478).has_teeth
    renderer = PortraitRenderer(portrait)
    c = controls(jaw_open=1.0)
    frame = renderer.render(c, np.zeros(3), np.zeros(2))
    moved = renderer.rig.pose(c, np.zeros(3), np.zeros(2))
    top, middle = gap_pixels(frame, moved, 0.1).mean(), gap_pixels(frame, moved, 0.5).mean()
    assert middle < 80 and top > middle + 40  # dark inside, lighter teeth under the upper lip
    measured = facecli.landmarks(tmp_path / "closed.png").landmarks_478[0]
    assert np.abs(measured[:, :2] - portrait.landmarks_478[:, :2]).mean() < 1.5
    assert read_image(tmp_path / "closed.png").shape == closed.shape
