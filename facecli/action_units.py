"""FACS action units measured on the face's geometry (``classify``).

Each of the action units OpenFace 2.0 reports is read off the same pose-free, neutral-relative
measures as the ARKit blendshapes (:mod:`facecli.blendshapes`): an AU's 0-1 activation is the
blendshape (or pair) that moves the same muscles, and its intensity is that times 5 (FACS's
A-E scale as OpenFace's 0-5 regressor output). Presence is intensity >= PRESENT_AT.
docs/classify.md says what geometry can and cannot see (subtle AU9, AU14).
"""

from __future__ import annotations

import numpy as np

from .blendshapes import FULL_SCALE_MM, Reading, ramp
from .results import AUS

NAMES = {
    1: "inner brow raiser", 2: "outer brow raiser", 4: "brow lowerer", 5: "upper lid raiser", 6: "cheek raiser",
    7: "lid tightener", 9: "nose wrinkler", 10: "upper lip raiser", 12: "lip corner puller", 14: "dimpler",
    15: "lip corner depressor", 17: "chin raiser", 20: "lip stretcher", 23: "lip tightener", 25: "lips part",
    26: "jaw drop", 28: "lip suck", 45: "blink",
}
MAX_INTENSITY = 5.0
PRESENT_AT = 1.0  # intensity from which an AU counts as present (OpenFace's _c)
LIPS_PART_MM = 3.0  # lip gap over neutral at which AU25 is full


def activations(reading: Reading) -> np.ndarray:
    """(N, len(AUS)) activations 0-1 in :data:`AUS` order."""
    r, d = reading, reading.changes_mm
    brows_together = ramp(-d["brow_gap"], FULL_SCALE_MM["brows_together"])
    by_au = {
        1: r.weight("browInnerUp"), 2: r.both_sides("browOuterUp"),
        4: np.maximum(r.both_sides("browDown"), brows_together), 5: r.both_sides("eyeWide"),
        6: r.both_sides("cheekSquint"), 7: r.both_sides("eyeSquint"), 9: r.both_sides("noseSneer"),
        10: r.both_sides("mouthUpperUp"), 12: r.both_sides("mouthSmile"), 14: r.both_sides("mouthDimple"),
        15: r.both_sides("mouthFrown"), 17: r.weight("mouthShrugLower"), 20: r.both_sides("mouthStretch"),
        23: r.both_sides("mouthPress"), 25: ramp(d["lip_gap"], LIPS_PART_MM), 26: r.weight("jawOpen"),
        28: np.maximum(r.weight("mouthRollUpper"), r.weight("mouthRollLower")), 45: r.both_sides("eyeBlink"),
    }
    return np.stack([by_au[au] for au in AUS], axis=1).astype(np.float32)


def asymmetry(reading: Reading) -> np.ndarray:
    """(N,) 0-1: one lip corner pulled up (a unilateral AU12) and not the other, as in contempt."""
    return np.abs(reading.weight("mouthSmileLeft") - reading.weight("mouthSmileRight"))
