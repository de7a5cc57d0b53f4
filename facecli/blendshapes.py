"""ARKit-named expression coefficients measured on metric head-frame faces.

Each coefficient comes from one geometric measure of the face in its head frame (pose already
removed; see :mod:`facecli.face3d`): a lid gap, a lip-corner height, a brow height. The
measure's change from the person's *neutral* face, divided by a full-scale displacement, gives
a 0-1 weight. Faces are first fitted onto the mean face's rigid points (a similarity: pose and
size removed), so the full scales are in millimetres of the mean face (63 mm between the
pupils; table in docs/reconstruct.md).

The neutral is calibrated per person (:func:`neutral_measures`): a track's own typical measures
(medians, or for the jaw and lips a closed-mouth percentile), held within a band around a population neutral. The band widens with the number of frames
seen, so a single image is measured against the population alone and a long video mostly
against the person. The population neutral is a relaxed, closed-mouth face
(``facecli/data/neutral_face.npz``, built by ``scripts/build_neutral_face.py``).

Left and right are the subject's, as ARKit's: ``eyeBlinkLeft`` is the eye on the image right.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .exchange import gaze_weights
from .face3d import aligned_to_mean_face
from .results import ARKIT_NAMES



def _arkit(live_link_name: str) -> str:
    return live_link_name[0].lower() + live_link_name[1:]


SIDES = ("Right", "Left")  # measures indexed 0: subject's right (image left), 1: left

# Per side: (upper, lower) lid point pairs across the eye's middle, the eye corners
# (outer, inner), the lower lid's middle, brow points (inner, outer), mouth corner, upper and
# lower lip points (outer, inner contour) beside the midline, cheek points under the eye, the
# nose wing, the cheek's widest point.
LID_PAIRS = (((159, 145), (158, 153), (160, 144)), ((386, 374), (385, 380), (387, 373)))
EYE_CORNERS = ((33, 133), (263, 362))
IRIS_CENTRE = (468, 473)
LOWER_LID = (145, 374)
INNER_BROW = ((107, 66, 55, 65), (336, 296, 285, 295))
OUTER_BROW = ((70, 63, 46, 53), (300, 293, 276, 283))
MOUTH_CORNER = (61, 291)
UPPER_LIP = ((37, 82), (267, 312))
LOWER_LIP = ((84, 87), (314, 317))
UNDER_EYE = ((117, 118, 101, 123, 147, 187), (346, 347, 330, 352, 376, 411))  # infraorbital and malar cheek
NOSE_WING = ((64, 48), (294, 278))
CHEEK = ((205, 50), (425, 280))
UPPER_LIP_MID, LOWER_LIP_INNER, UPPER_LIP_INNER, CHIN, NOSE_BASE = 0, 14, 13, 152, 2

# Full-scale displacements, mm on the mean face: the change from neutral that gives a weight of 1.
FULL_SCALE_MM = {
    "jaw_drop": 25.0, "jaw_side": 6.0, "mouth_side": 5.0, "corner_up": 4.0, "corner_down": 3.0,
    "corner_out": 5.0, "lip_raise": 4.0, "lip_lower": 4.0, "brow_up": 6.0, "brow_down": 4.0,
    "lid_raise": 1.5, "cheek_raise": 2.5, "cheek_out": 5.0, "nose_wing_up": 2.5, "chin_raise": 3.0,
    "corner_back": 3.0, "brows_together": 4.0, "iris_shift": 2.0,
}
MOUTH_NARROW = 0.2  # mouth 20% narrower than neutral: full pucker or funnel
FUNNEL_GAP_MM = 5.0  # lip gap that turns a pucker into a funnel
PARTED_SPREAD = 0.2  # mm each corner moves out per mm the lips part: not a stretch (measured, jaw drops)
LIP_PRESS = 0.3  # lips 30% thinner: full press (rolling in starts a little earlier, LIP_ROLL)
LIP_ROLL = (0.25, 0.45)  # thinning where rolling starts, and its full scale
EYE_CLOSED = 0.8  # lid gap shrunk by 80% of the neutral gap: fully closed
EYE_WIDE = 0.5  # lid gap 50% over neutral: fully wide
JAW_GAP_SHARE = 0.8  # of a chin drop that shows as lip gap when the lips follow the jaw
EYEBALL_RADIUS_MM = 12.0

NEUTRAL_BAND = 0.6  # a person's neutral may differ from the population's by this many full scales
FRAMES_FOR_FULL_BAND = 150  # frames seen before the band is fully open
UNSURE_SHARE = 0.35  # full scales of change a population neutral cannot tell from a person's own face
# Measures whose rest lies at one end of their range: a talking face's median has the jaw half open.
REST_AT_LOW = ("chin_drop", "lip_gap")
REST_PERCENTILE = 10
FRAMES_FOR_OWN_REST = 25

MEASURED = (
    "eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeWideRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight",
    "jawOpen", "jawLeft", "jawRight", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthShrugLower",
    "mouthPressLeft", "mouthPressRight", "mouthRollUpper", "mouthRollLower", "mouthUpperUpLeft", "mouthUpperUpRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "browDownLeft", "browDownRight", "browInnerUp",
    "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
)
UNMEASURED = tuple(name for name in ARKIT_NAMES if name not in MEASURED)


def _y(faces: np.ndarray, points) -> np.ndarray:
    return faces[:, list(points), 1].mean(axis=1)


def _per_side(measure) -> np.ndarray:
    """(N, 2): a measure for the right and the left side."""
    return np.stack([measure(side) for side in range(2)], axis=1)


def measures(faces_mm: np.ndarray) -> dict[str, np.ndarray]:
    """The geometric measures, mm on the mean face: (N,) or (N, 2) per side (right, left).

    Heights are y (down is positive) in the head frame; "out" is away from the midline.
    """
    f = aligned_to_mean_face(faces_mm)  # pose and size removed: measures compare across frames and people
    x = f[..., 0]
    outward = np.array([-1.0, 1.0])  # the subject's right side lies at negative x
    iris = np.stack([f[:, IRIS_CENTRE[s], :2] - f[:, list(EYE_CORNERS[s]), :2].mean(axis=1) for s in range(2)], 1)
    return {
        "lid_gap": _per_side(lambda s: np.mean([f[:, lo, 1] - f[:, up, 1] for up, lo in LID_PAIRS[s]], axis=0)),
        "lower_lid": _per_side(lambda s: f[:, LOWER_LID[s], 1] - _y(f, EYE_CORNERS[s])),
        "iris_xy": iris,  # (N, 2 sides, 2) iris centre from the middle of the eye corners
        "inner_brow": _per_side(lambda s: _y(f, INNER_BROW[s])),
        "outer_brow": _per_side(lambda s: _y(f, OUTER_BROW[s])),
        "chin_drop": f[:, CHIN, 1] - f[:, NOSE_BASE, 1],
        "chin_x": x[:, CHIN],
        "lip_gap": f[:, LOWER_LIP_INNER, 1] - f[:, UPPER_LIP_INNER, 1],
        "mouth_width": x[:, MOUTH_CORNER[1]] - x[:, MOUTH_CORNER[0]],
        "mouth_x": x[:, list(MOUTH_CORNER)].mean(axis=1),
        "corner_height": _per_side(lambda s: f[:, MOUTH_CORNER[s], 1] - f[:, UPPER_LIP_MID, 1]),
        "corner_out": _per_side(lambda s: outward[s] * (x[:, MOUTH_CORNER[s]] - x[:, UPPER_LIP_MID])),
        "upper_lip_thickness": _per_side(lambda s: f[:, UPPER_LIP[s][1], 1] - f[:, UPPER_LIP[s][0], 1]),
        "lower_lip_thickness": _per_side(lambda s: f[:, LOWER_LIP[s][0], 1] - f[:, LOWER_LIP[s][1], 1]),
        "upper_lip_height": _per_side(lambda s: f[:, UPPER_LIP[s][0], 1] - f[:, NOSE_BASE, 1]),
        "lower_lip_to_chin": _per_side(lambda s: f[:, CHIN, 1] - f[:, LOWER_LIP[s][0], 1]),
        "under_eye": _per_side(lambda s: _y(f, UNDER_EYE[s])),
        "nose_wing": _per_side(lambda s: _y(f, NOSE_WING[s])),
        "cheek_out": _per_side(lambda s: outward[s] * f[:, list(CHEEK[s]), 0].mean(axis=1)),
        "corner_depth": _per_side(lambda s: f[:, MOUTH_CORNER[s], 2] - f[:, UPPER_LIP_MID, 2]),
        "brow_gap": x[:, INNER_BROW[1][0]] - x[:, INNER_BROW[0][0]],
    }


# The measures whose person-to-person variation the neutral band allows, in full scales of:
BAND_SCALE_MM = {
    "lid_gap": "lid_raise", "lower_lid": "lid_raise", "iris_xy": "iris_shift", "inner_brow": "brow_up",
    "outer_brow": "brow_up", "chin_drop": "jaw_drop", "chin_x": "jaw_side", "lip_gap": "corner_down",
    "mouth_width": "corner_out", "mouth_x": "mouth_side", "corner_height": "corner_up", "corner_out": "corner_out",
    "upper_lip_thickness": "lip_raise", "lower_lip_thickness": "lip_lower", "upper_lip_height": "lip_raise",
    "lower_lip_to_chin": "lip_lower", "under_eye": "cheek_raise", "nose_wing": "nose_wing_up", "cheek_out": "cheek_out",
    "corner_depth": "corner_back", "brow_gap": "brows_together",
}


@functools.cache
def population_neutral() -> dict[str, np.ndarray]:
    """The measures of the population neutral face (one row)."""
    ref = resources.files("facecli") / "data" / "neutral_face.npz"
    with ref.open("rb") as fh, np.load(fh) as npz:
        face = npz["vertices_mm"]
    return {name: value[0] for name, value in measures(face[None]).items()}


@dataclass
class Neutral:
    """A person's neutral measures, and how uncertain each still is (mm, or the measure's unit):
    changes within the uncertainty read as no change."""

    values: dict[str, np.ndarray]
    tolerance: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    def changes(self, measured: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each measure minus its neutral value, shrunk towards 0 by the tolerance."""
        out = {}
        for name, value in measured.items():
            change = value - self.values[name]
            out[name] = np.sign(change) * np.maximum(np.abs(change) - self.tolerance[name], 0.0)
        return out


def neutral_measures(faces_mm: np.ndarray, frames_seen: int) -> Neutral:
    """A person's neutral from a sample of their faces (K, 478, 3): the median of each measure,
    or for those that rest at one end (a closed jaw, closed lips) a low percentile; held within
    a band around the population neutral that widens with the frames seen (the closed mouth
    needs no band once FRAMES_FOR_OWN_REST frames are seen). The part of the band not yet open
    is the neutral's uncertainty: a single image reads only changes beyond the usual spread of
    faces around the population neutral, never a wide mouth or narrow eyes as expression."""
    sample = measures(faces_mm)
    openness = min(1.0, frames_seen / FRAMES_FOR_FULL_BAND)
    values, tolerance = {}, {}
    for name, population in population_neutral().items():
        own = np.percentile(sample[name], REST_PERCENTILE, axis=0) if name in REST_AT_LOW else \
            np.median(sample[name], axis=0)
        full_band = NEUTRAL_BAND * FULL_SCALE_MM[BAND_SCALE_MM[name]]
        band, unsure = full_band * openness, UNSURE_SHARE * full_band / NEUTRAL_BAND * (1.0 - openness)
        if name in REST_AT_LOW and frames_seen >= FRAMES_FOR_OWN_REST:
            band, unsure = np.inf, 0.0  # a closed mouth is seen in any second of video: no population needed
        # Pairs move together: the band holds the pair's mean, and the person's own left/right
        # difference is kept (as far as the frames seen allow), or a lopsided face reads as contempt
        centre = own.mean(axis=-1, keepdims=True) if own.ndim == 1 and own.size == 2 else own
        values[name] = np.clip(centre, population - band, population + band) + (own - centre) * openness
        tolerance[name] = np.full_like(values[name], unsure, dtype=np.float64)
    return Neutral(values, tolerance)


def ramp(value: np.ndarray, full_scale: float) -> np.ndarray:
    """0 at no change, 1 at ``full_scale``, clipped."""
    return np.clip(value / full_scale, 0.0, 1.0)


@dataclass
class Reading:
    """What :func:`measure_blendshapes` reads off faces against a neutral."""

    weights: np.ndarray  # (N, 52) 0-1 in ARKIT_NAMES order
    gaze_deg: np.ndarray  # (N, 2) eye yaw and pitch, see gaze_deg()
    changes_mm: dict[str, np.ndarray]  # each measure minus its neutral value

    def weight(self, name: str) -> np.ndarray:
        return self.weights[:, ARKIT_NAMES.index(name)]

    def both_sides(self, stem: str) -> np.ndarray:
        """(N,) mean of a left/right pair, e.g. ``both_sides("mouthSmile")``."""
        return (self.weight(f"{stem}Left") + self.weight(f"{stem}Right")) / 2


def measure_blendshapes(faces_mm: np.ndarray, neutral: Neutral) -> Reading:
    """(N, 478, 3) head-frame faces -> their ARKit weights, gaze and measure changes."""
    d = neutral.changes(measures(faces_mm))
    lip_open = ramp(d["lip_gap"], FUNNEL_GAP_MM)
    w = _mouth_weights(d, neutral, lip_open)
    w["browInnerUp"] = ramp(-d["inner_brow"].mean(axis=1), FULL_SCALE_MM["brow_up"])
    w["cheekPuff"] = ramp(d["cheek_out"].mean(axis=1), FULL_SCALE_MM["cheek_out"])
    for stem, values in _per_side_weights(d, neutral, lip_open).items():
        for side, name in enumerate(SIDES):
            w[f"{stem}{name}"] = values[:, side]
    gaze = gaze_deg(d["iris_xy"])
    w |= {_arkit(name): values for name, values in gaze_weights(gaze).items()}
    out = np.zeros((len(lip_open), len(ARKIT_NAMES)), np.float32)
    for name, values in w.items():
        out[:, ARKIT_NAMES.index(name)] = values
    return Reading(out, gaze.astype(np.float32), d)


def _mouth_weights(d: dict[str, np.ndarray], neutral: Neutral,
                   lip_open: np.ndarray) -> dict[str, np.ndarray]:
    s = FULL_SCALE_MM
    lips_apart = ramp(d["lip_gap"], JAW_GAP_SHARE * s["jaw_drop"])
    # Lips part mostly by the jaw: it is at least as open as they are (the chin is the
    # mesh's least certain point, the lips its best)
    jaw = np.maximum(ramp(d["chin_drop"], s["jaw_drop"]), lips_apart)
    narrow = ramp(-d["mouth_width"] / neutral["mouth_width"], MOUTH_NARROW)
    thinning = -np.stack([d["upper_lip_thickness"] / neutral["upper_lip_thickness"],
                          d["lower_lip_thickness"] / neutral["lower_lip_thickness"]])  # (2 lips, N, 2 sides)
    return {
        "jawOpen": jaw, "mouthClose": np.clip(jaw - lips_apart, 0.0, 1.0),
        "jawLeft": ramp(d["chin_x"], s["jaw_side"]), "jawRight": ramp(-d["chin_x"], s["jaw_side"]),
        "mouthLeft": ramp(d["mouth_x"], s["mouth_side"]), "mouthRight": ramp(-d["mouth_x"], s["mouth_side"]),
        "mouthPucker": narrow * (1.0 - lip_open), "mouthFunnel": narrow * lip_open,
        "mouthRollUpper": ramp(thinning[0].mean(axis=1) - LIP_ROLL[0], LIP_ROLL[1]),
        "mouthRollLower": ramp(thinning[1].mean(axis=1) - LIP_ROLL[0], LIP_ROLL[1]),
        # the chin boss pushing up against closed lips (AU17)
        "mouthShrugLower": ramp(-d["chin_drop"], s["chin_raise"]) * (1.0 - lip_open),
    }


def _per_side_weights(d: dict[str, np.ndarray], neutral: Neutral,
                      lip_open: np.ndarray) -> dict[str, np.ndarray]:
    """(N, 2) per-side weights (right, left), by the stem of their ARKit names."""
    s = FULL_SCALE_MM
    lid = d["lid_gap"] / neutral["lid_gap"]
    smile = ramp(-d["corner_height"], s["corner_up"])
    thinning = -(d["upper_lip_thickness"] / neutral["upper_lip_thickness"]
                 + d["lower_lip_thickness"] / neutral["lower_lip_thickness"]) / 2
    return {
        "eyeBlink": ramp(-lid, EYE_CLOSED), "eyeWide": ramp(lid, EYE_WIDE),
        "eyeSquint": ramp(-d["lower_lid"], s["lid_raise"]),
        "mouthSmile": smile, "mouthFrown": ramp(d["corner_height"], s["corner_down"]),
        "mouthStretch": ramp(d["corner_out"] - PARTED_SPREAD * np.maximum(d["lip_gap"], 0.0)[:, None],
                              s["corner_out"]) * (1.0 - smile),
        "mouthDimple": ramp(d["corner_depth"], s["corner_back"]) * (1.0 - smile),  # a smile pulls back too
        "mouthPress": ramp(thinning, LIP_PRESS) * (1.0 - lip_open[:, None]),
        "mouthUpperUp": ramp(-d["upper_lip_height"], s["lip_raise"]),
        "mouthLowerDown": ramp(-d["lower_lip_to_chin"], s["lip_lower"]),
        "browDown": ramp((d["inner_brow"] + d["outer_brow"]) / 2, s["brow_down"]),
        "browOuterUp": ramp(-d["outer_brow"], s["brow_up"]),
        "cheekSquint": ramp(-d["under_eye"], s["cheek_raise"]),
        "noseSneer": ramp(-d["nose_wing"], s["nose_wing_up"]),
    }


def gaze_deg(iris_shift_mm: np.ndarray) -> np.ndarray:
    """(N, 2 sides, 2) iris shift from neutral, mm -> (N, 2) eye yaw, pitch, degrees, both eyes'
    mean (yaw > 0: towards the subject's right; pitch > 0: up, as :class:`~facecli.results.Motion`)."""
    shift = iris_shift_mm.mean(axis=1)
    return -np.degrees(np.arcsin(np.clip(shift / EYEBALL_RADIUS_MM, -1.0, 1.0)))
