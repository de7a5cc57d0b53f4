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
UNDER_EYE = ((117, 118, 101), (346, 347, 330))
NOSE_WING = ((64, 48), (294, 278))
CHEEK = ((205, 50), (425, 280))
UPPER_LIP_MID, LOWER_LIP_INNER, UPPER_LIP_INNER, CHIN, NOSE_BASE = 0, 14, 13, 152, 2

# Full-scale displacements, mm on the mean face: the change from neutral that gives a weight of 1.
FULL_SCALE_MM = {
    "jaw_drop": 25.0, "jaw_side": 6.0, "mouth_side": 5.0, "corner_up": 4.0, "corner_down": 3.0,
    "corner_out": 5.0, "lip_raise": 4.0, "lip_lower": 4.0, "brow_up": 6.0, "brow_down": 4.0,
    "lid_raise": 1.5, "cheek_raise": 4.0, "cheek_out": 5.0, "nose_wing_up": 2.5,
}
MOUTH_NARROW = 0.2  # mouth 20% narrower than neutral: full pucker or funnel
FUNNEL_GAP_MM = 5.0  # lip gap that turns a pucker into a funnel
LIP_PRESS = 0.3  # lips 30% thinner: full press; rolled in beyond that
LIP_ROLL = (0.25, 0.45)  # thinning where rolling starts, and its full scale
EYE_CLOSED = 0.8  # lid gap shrunk by 80% of the neutral gap: fully closed
EYE_WIDE = 0.5  # lid gap 50% over neutral: fully wide
JAW_GAP_SHARE = 0.8  # of a chin drop that shows as lip gap when the lips follow the jaw
EYEBALL_RADIUS_MM = 12.0

NEUTRAL_BAND = 0.6  # a person's neutral may differ from the population's by this many full scales
FRAMES_FOR_FULL_BAND = 150  # frames seen before the band is fully open
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
    "mouthPressLeft", "mouthPressRight", "mouthRollUpper", "mouthRollLower", "mouthUpperUpLeft", "mouthUpperUpRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "browDownLeft", "browDownRight", "browInnerUp",
    "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
)
UNMEASURED = tuple(name for name in ARKIT_NAMES if name not in MEASURED)


def normalised(faces_mm: np.ndarray) -> np.ndarray:
    """(N, 478, 3) faces on the mean face's rigid points (similarity fit): pose and size removed,
    so measures compare across frames and people."""
    return aligned_to_mean_face(faces_mm)


def _y(faces: np.ndarray, points) -> np.ndarray:
    return faces[:, list(points), 1].mean(axis=1)


def _per_side(measure) -> np.ndarray:
    """(N, 2): a measure for the right and the left side."""
    return np.stack([measure(side) for side in range(2)], axis=1)


def measures(faces_mm: np.ndarray) -> dict[str, np.ndarray]:
    """The geometric measures, mm on the mean face: (N,) or (N, 2) per side (right, left).

    Heights are y (down is positive) in the head frame; "out" is away from the midline.
    """
    f = normalised(faces_mm)
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
    }


# The measures whose person-to-person variation the neutral band allows, in full scales of:
BAND_SCALE_MM = {
    "lid_gap": "lid_raise", "lower_lid": "lid_raise", "iris_xy": "corner_out", "inner_brow": "brow_up",
    "outer_brow": "brow_up", "chin_drop": "jaw_drop", "chin_x": "jaw_side", "lip_gap": "corner_down",
    "mouth_width": "corner_out", "mouth_x": "mouth_side", "corner_height": "corner_up", "corner_out": "corner_out",
    "upper_lip_thickness": "lip_raise", "lower_lip_thickness": "lip_lower", "upper_lip_height": "lip_raise",
    "lower_lip_to_chin": "lip_lower", "under_eye": "cheek_raise", "nose_wing": "nose_wing_up", "cheek_out": "cheek_out",
}


@functools.cache
def population_neutral() -> dict[str, np.ndarray]:
    """The measures of the population neutral face (one row)."""
    ref = resources.files("facecli") / "data" / "neutral_face.npz"
    with ref.open("rb") as fh, np.load(fh) as npz:
        face = npz["vertices_mm"]
    return {name: value[0] for name, value in measures(face[None]).items()}


def neutral_measures(faces_mm: np.ndarray, frames_seen: int) -> dict[str, np.ndarray]:
    """A person's neutral measures from a sample of their faces (K, 478, 3): the median of each
    measure, or for those that rest at one end (a closed jaw, closed lips) a low percentile; held
    within a band around the population neutral that widens with the frames seen (the closed
    mouth needs no band once FRAMES_FOR_OWN_REST frames are seen)."""
    sample = measures(faces_mm)
    openness = min(1.0, frames_seen / FRAMES_FOR_FULL_BAND)
    neutral = {}
    for name, population in population_neutral().items():
        own = np.percentile(sample[name], REST_PERCENTILE, axis=0) if name in REST_AT_LOW else \
            np.median(sample[name], axis=0)
        band = NEUTRAL_BAND * FULL_SCALE_MM[BAND_SCALE_MM[name]] * openness
        if name in REST_AT_LOW and frames_seen >= FRAMES_FOR_OWN_REST:
            band = np.inf  # a closed mouth is seen in any second of video: no population needed
        neutral[name] = np.clip(own, population - band, population + band)
    return neutral


def _ramp(value: np.ndarray, full_scale: float) -> np.ndarray:
    return np.clip(value / full_scale, 0.0, 1.0)


def measure_blendshapes(faces_mm: np.ndarray, neutral: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 478, 3) head-frame faces -> ((N, 52) weights 0-1 in :data:`ARKIT_NAMES` order,
    (N, 2) gaze yaw and pitch in degrees, see :func:`gaze_deg`)."""
    m = measures(faces_mm)
    d = {name: m[name] - neutral[name] for name in m}
    s = FULL_SCALE_MM
    w: dict[str, np.ndarray] = {}
    lid = d["lid_gap"] / neutral["lid_gap"]
    lips_apart = _ramp(d["lip_gap"], JAW_GAP_SHARE * s["jaw_drop"])
    # Lips part mostly by the jaw: it is at least as open as they are (the chin is the
    # mesh's least certain point, the lips its best)
    jaw = np.maximum(_ramp(d["chin_drop"], s["jaw_drop"]), lips_apart)
    narrow = _ramp(-d["mouth_width"] / neutral["mouth_width"], MOUTH_NARROW)
    lip_open = _ramp(d["lip_gap"], FUNNEL_GAP_MM)
    w["jawOpen"], w["mouthClose"] = jaw, np.clip(jaw - lips_apart, 0.0, 1.0)
    w["jawLeft"], w["jawRight"] = _ramp(d["chin_x"], s["jaw_side"]), _ramp(-d["chin_x"], s["jaw_side"])
    w["mouthLeft"], w["mouthRight"] = _ramp(d["mouth_x"], s["mouth_side"]), _ramp(-d["mouth_x"], s["mouth_side"])
    w["mouthPucker"], w["mouthFunnel"] = narrow * (1.0 - lip_open), narrow * lip_open
    thinning = -np.stack([d["upper_lip_thickness"] / neutral["upper_lip_thickness"],
                          d["lower_lip_thickness"] / neutral["lower_lip_thickness"]])  # (2 lips, N, 2 sides)
    w["mouthRollUpper"] = _ramp(thinning[0].mean(axis=1) - LIP_ROLL[0], LIP_ROLL[1])
    w["mouthRollLower"] = _ramp(thinning[1].mean(axis=1) - LIP_ROLL[0], LIP_ROLL[1])
    w["browInnerUp"] = _ramp(-d["inner_brow"].mean(axis=1), s["brow_up"])
    w["cheekPuff"] = _ramp(d["cheek_out"].mean(axis=1), s["cheek_out"])
    smile = _ramp(-d["corner_height"], s["corner_up"])
    per_side = {
        "eyeBlink": _ramp(-lid, EYE_CLOSED), "eyeWide": _ramp(lid, EYE_WIDE),
        "eyeSquint": _ramp(-d["lower_lid"], s["lid_raise"]),
        "mouthSmile": smile, "mouthFrown": _ramp(d["corner_height"], s["corner_down"]),
        "mouthStretch": _ramp(d["corner_out"], s["corner_out"]) * (1.0 - smile),
        "mouthPress": _ramp(thinning.mean(axis=0), LIP_PRESS) * (1.0 - lip_open[:, None]),
        "mouthUpperUp": _ramp(-d["upper_lip_height"], s["lip_raise"]),
        "mouthLowerDown": _ramp(-d["lower_lip_to_chin"], s["lip_lower"]),
        "browDown": _ramp((d["inner_brow"] + d["outer_brow"]) / 2, s["brow_down"]),
        "browOuterUp": _ramp(-d["outer_brow"], s["brow_up"]),
        "cheekSquint": _ramp(-d["under_eye"], s["cheek_raise"]),
        "noseSneer": _ramp(-d["nose_wing"], s["nose_wing_up"]),
    }
    for stem, values in per_side.items():
        for side, name in enumerate(SIDES):
            w[f"{stem}{name}"] = values[:, side]
    gaze = gaze_deg(d["iris_xy"])
    w |= {_arkit(name): values for name, values in gaze_weights(gaze).items()}
    out = np.zeros((len(jaw), len(ARKIT_NAMES)), np.float32)
    for name, values in w.items():
        out[:, ARKIT_NAMES.index(name)] = values
    return out, gaze.astype(np.float32)


def gaze_deg(iris_shift_mm: np.ndarray) -> np.ndarray:
    """(N, 2 sides, 2) iris shift from neutral, mm -> (N, 2) eye yaw, pitch, degrees, both eyes'
    mean (yaw > 0: towards the subject's right; pitch > 0: up, as :class:`~facecli.results.Motion`)."""
    shift = iris_shift_mm.mean(axis=1)
    return -np.degrees(np.arcsin(np.clip(shift / EYEBALL_RADIUS_MM, -1.0, 1.0)))
