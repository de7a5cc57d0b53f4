"""Exchange formats for ``facecli animate``: Live Link Face CSV and Rhubarb Lip Sync mouth cues.

* :func:`write_live_link_csv` writes a :class:`~facecli.results.Motion` as the CSV that Epic's
  Live Link Face app records (52 ARKit blendshapes plus head and eye rotations per frame).
* :func:`mouth_cues` turns speech phones into Rhubarb Lip Sync mouth shapes (A-H, X), and
  :func:`write_mouth_cues` writes them as Rhubarb's JSON or TSV.

"Left" and "right" in our control names are the subject's; see docs/formats.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from fractions import Fraction
from pathlib import Path

import numpy as np

from .atomic import atomic_output
from .errors import UsageError
from .results import Motion
from .speech import Phone

# ---------------------------------------------------------------- Live Link Face CSV

# The app's header, in the app's order and spelling (readers also accept "BlendShapeCount").
LIVE_LINK_COLUMNS = (
    "Timecode", "BlendshapeCount",
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft",
    "EyeSquintLeft", "EyeWideLeft",
    "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight",
    "JawForward", "JawRight", "JawLeft", "JawOpen",
    "MouthClose", "MouthFunnel", "MouthPucker", "MouthRight", "MouthLeft",
    "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft", "MouthFrownRight",
    "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper",
    "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight",
    "MouthUpperUpLeft", "MouthUpperUpRight",
    "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight",
    "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight",
    "TongueOut",
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)
BLENDSHAPE_COUNT = 61  # what the app writes in BlendshapeCount: 52 blendshapes + 9 rotations
BLENDSHAPES = LIVE_LINK_COLUMNS[2:54]
ROTATIONS = LIVE_LINK_COLUMNS[54:]

# Blendshapes copied from one control; unlisted blendshapes stay 0.
COPIED_CONTROLS = {
    "JawOpen": "jaw_open",
    "MouthPressLeft": "lip_press", "MouthPressRight": "lip_press",
    "MouthStretchLeft": "lip_stretch", "MouthStretchRight": "lip_stretch",
    "MouthPucker": "lip_pucker", "MouthFunnel": "lip_funnel",
    "MouthUpperUpLeft": "upper_lip_raise", "MouthUpperUpRight": "upper_lip_raise",
    "MouthLowerDownLeft": "lower_lip_down", "MouthLowerDownRight": "lower_lip_down",
    "MouthSmileLeft": "smile", "MouthSmileRight": "smile",
    "MouthFrownLeft": "frown", "MouthFrownRight": "frown",
    "BrowOuterUpLeft": "brow_raise", "BrowOuterUpRight": "brow_raise",
    "BrowDownLeft": "brow_down", "BrowDownRight": "brow_down",
    "EyeWideLeft": "eye_wide", "EyeWideRight": "eye_wide",
    "EyeSquintLeft": "eye_squint", "EyeSquintRight": "eye_squint",
    "NoseSneerLeft": "nose_sneer", "NoseSneerRight": "nose_sneer",
    "EyeBlinkLeft": "blink_left", "EyeBlinkRight": "blink_right",
}
DERIVED_BLENDSHAPES: dict[str, Callable[[Motion], np.ndarray]] = {
    # ARKit's MouthClose closes the lips *against an open jaw*: it only acts while JawOpen does.
    "MouthClose": lambda m: m.control("lip_close") * m.control("jaw_open"),
    "BrowInnerUp": lambda m: np.maximum(m.control("brow_raise"), m.control("brow_inner_up")),
    "CheekSquintLeft": lambda m: 0.5 * m.control("smile"),  # a smile lifts the cheeks a little
    "CheekSquintRight": lambda m: 0.5 * m.control("smile"),
}
GAZE_FULL_DEG = 30.0  # eye rotation that gives an EyeLook* weight of 1

# Rotations: degrees / 180, so -1..1, as Unreal's ARKit face code that the app runs writes them
# (AppleARKitFaceSupport ToBlendShapeMap: "Map the -180..180 range to -1..1"). Eye signs checked
# on real app takes (alexdjulin/LiveLinkFace-CSV-Retarget-For-Motionbuilder, anim/*.csv; head
# rotation was off there): eye pitch > 0 with EyeLookDown*, eye yaw < 0 with EyeLookOutLeft +
# EyeLookInRight. Head angles go through the same conversion, so: yaw > 0 turns towards the side
# named Right (our yaw and gaze yaw: the subject's right), pitch > 0 is down (our head pitch; our
# gaze pitch is up, so negated), roll > 0 tips the top of the head towards the side named Left
# (derived, not seen in a take; our roll: top of the head to the image right, the subject's left).
ROTATION_UNIT_DEG = 180.0


def write_live_link_csv(motion: Motion, path: Path, fps: float) -> None:
    """Write ``motion`` as a Live Link Face CSV, one row per frame, atomically."""
    with LiveLinkWriter(path, fps) as out:
        out.write(motion.timestamp_s, _blendshape_weights(motion), motion.head_pose_deg, motion.gaze_deg)


class LiveLinkWriter:
    """Streams rows into a Live Link Face CSV; the file appears when the ``with`` block ends
    without an error."""

    def __init__(self, path: Path, fps: float):
        if not (math.isfinite(fps) and fps > 0):
            raise UsageError(f"the Live Link Face timecode needs a frame rate > 0, got {fps}", path)
        self.fps, self._atomic = fps, atomic_output(path)

    def __enter__(self) -> LiveLinkWriter:
        self._out = open(self._atomic.__enter__(), "w", encoding="utf-8", newline="")
        self._out.write(",".join(LIVE_LINK_COLUMNS) + "\n")
        return self

    def write(self, times_s: np.ndarray, blendshapes_52: np.ndarray, head_pose_deg: np.ndarray,
              gaze_deg: np.ndarray) -> None:
        """Rows at ``times_s``: weights in the app's order, head yaw/pitch/roll and eye yaw/pitch (degrees,
        the signs of :class:`~facecli.results.Motion`)."""
        rotations = _rotations(head_pose_deg, gaze_deg)
        for time_s, weights, angles in zip(times_s, np.clip(blendshapes_52, 0.0, 1.0), rotations):
            self._out.write(f"{live_link_timecode(float(time_s), self.fps)},{BLENDSHAPE_COUNT},"
                            + ",".join(f"{v:.4f}" for v in weights) + ","
                            + ",".join(f"{v:.6f}" for v in angles) + "\n")

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._out.close()
        self._atomic.__exit__(exc_type, exc, tb)


def live_link_timecode(time_s: float, fps: float) -> str:
    """``HH:MM:SS:FF.mmm``: FF counts frames at ``fps`` within the second."""
    # .mmm is thousandths of a frame (the sub-frame), not milliseconds: the app writes e.g.
    # 12:27:47:47.169, 12:27:47:49.169 (real take above); our frames fall on whole frames: .000.
    rate = Fraction(fps).limit_denominator(1001)  # keeps 29.97 and 30000/1001 exact
    milliframes = max(0, round(time_s * float(rate) * 1000))
    whole_s, in_second = divmod(Fraction(milliframes), rate * 1000)
    frame, subframe = divmod(int(in_second), 1000)
    hours, rest = divmod(int(whole_s), 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}:{frame:02d}.{subframe:03d}"


def _blendshape_weights(motion: Motion) -> np.ndarray:
    """(N, 52) weights 0-1 in the app's column order."""
    weights = np.zeros((len(motion), len(BLENDSHAPES)), np.float64)
    sources = {name: motion.control(control) for name, control in COPIED_CONTROLS.items()}
    sources |= {name: derive(motion) for name, derive in DERIVED_BLENDSHAPES.items()}
    sources |= gaze_weights(motion.gaze_deg)
    for name, value in sources.items():
        weights[:, BLENDSHAPES.index(name)] = value
    return weights


def gaze_weights(gaze_deg: np.ndarray) -> dict[str, np.ndarray]:
    """EyeLook* weights: looking towards the subject's right is out for the right eye, in for the left."""
    yaw_deg, pitch_deg = np.asarray(gaze_deg, np.float64).T  # yaw > 0: subject's right; pitch > 0: up
    right, left = np.clip(yaw_deg / GAZE_FULL_DEG, 0, 1), np.clip(-yaw_deg / GAZE_FULL_DEG, 0, 1)
    up, down = np.clip(pitch_deg / GAZE_FULL_DEG, 0, 1), np.clip(-pitch_deg / GAZE_FULL_DEG, 0, 1)
    return {
        "EyeLookOutRight": right, "EyeLookInLeft": right, "EyeLookOutLeft": left, "EyeLookInRight": left,
        "EyeLookUpLeft": up, "EyeLookUpRight": up, "EyeLookDownLeft": down, "EyeLookDownRight": down,
    }


def _rotations(head_pose_deg: np.ndarray, gaze_deg: np.ndarray) -> np.ndarray:
    """(N, 9) HeadYaw, HeadPitch, HeadRoll, then yaw, pitch, roll of each eye (both eyes alike)."""
    yaw, pitch, roll = np.asarray(head_pose_deg, np.float64).T
    eye_yaw, eye_pitch = np.asarray(gaze_deg, np.float64).T
    eye = [eye_yaw, -eye_pitch, np.zeros_like(eye_yaw)]
    return np.stack([yaw, pitch, roll, *eye, *eye], axis=1) / ROTATION_UNIT_DEG


# ---------------------------------------------------------------- Rhubarb Lip Sync mouth cues

# Rhubarb's shapes: A closed (P B M), B slightly open, teeth together, C open, D wide open,
# E rounded, F puckered, and the extended G (upper teeth on lower lip), H (tongue up, L) and
# X (rest). One shape per CMU phone; diphthongs take their opening part (Rhubarb's own rules
# animate them as two shapes).
SHAPE_OF_PHONE = {
    "P": "A", "B": "A", "M": "A",
    "IY": "B", "IH": "B",
    "T": "B", "D": "B", "K": "B", "G": "B", "N": "B", "NG": "B", "HH": "B",
    "S": "B", "Z": "B", "SH": "B", "ZH": "B", "TH": "B", "DH": "B", "CH": "B", "JH": "B",
    "R": "B", "Y": "B",
    "EH": "C", "AE": "C", "AH": "C", "EY": "C",
    "AA": "D", "AY": "D", "AW": "D",
    "AO": "E", "ER": "E", "OY": "E",
    "UW": "F", "OW": "F", "UH": "F", "W": "F",
    "F": "G", "V": "G",
    "L": "H",
    "SIL": "X",
}
OTHER_PHONE_SHAPE = "B"  # labels outside the table (noise): Rhubarb shows noise as B
# Without extended shapes Rhubarb draws G as A, H as C and X as A (its getBasicShape).
BASIC_SHAPE = {"G": "A", "H": "C", "X": "A"}
# Rhubarb's timing: a pause shorter than 12 cs holds the previous shape, and shapes shorter
# than 7 cs flicker ("Too short, and we get flickering"): they are merged into a neighbour.
HOLD_PAUSE_CS = 12
MIN_CUE_CS = 7  # 0.07 s, longer than one frame at 24 fps (0.042 s)
MOUTH_CUE_SUFFIXES = (".json", ".tsv")
Cue = tuple[int, int, str]  # start_cs, end_cs, shape (internal, on Rhubarb's centisecond grid)


@dataclass(frozen=True)
class MouthCue:
    start_s: float
    end_s: float
    shape: str  # Rhubarb mouth shape: A-F, or with extended shapes also G, H, X


def mouth_cues(phones: list[Phone], duration_s: float, extended: bool = True) -> list[MouthCue]:
    """Rhubarb mouth cues that tile [0, duration_s], on Rhubarb's centisecond grid.

    Equal neighbours are merged, pauses under 0.12 s hold the previous shape, and cues under
    0.07 s are lengthened (closed lips) or handed to their longer neighbour. ``extended=False``
    uses only A-F, as Rhubarb does. A zero duration gives one zero-length rest cue, as Rhubarb.
    """
    end_cs = max(0, round(duration_s * 100))
    if end_cs == 0:
        return [MouthCue(0.0, 0.0, "X" if extended else BASIC_SHAPE["X"])]
    cues = _phone_cues(phones, end_cs)
    if not extended:  # like Rhubarb: basic shapes first, X (pauses) last
        cues = _to_basic(cues, keep_rest=True)
    cues = _absorb_short_cues(_hold_short_pauses(_merge(cues)))
    if not extended:
        cues = _merge(_to_basic(cues, keep_rest=False))
    return [MouthCue(s / 100, e / 100, v) for s, e, v in cues]


def _phone_cues(phones: list[Phone], end_cs: int) -> list[Cue]:
    """One cue per phone on the centisecond grid, clipped to [0, end_cs]; gaps become X."""
    cues, at = [], 0
    for phone in sorted(phones, key=lambda p: p.start_s):
        start, end = max(round(phone.start_s * 100), at), min(round(phone.end_s * 100), end_cs)
        if start > at:
            cues.append((at, start, "X"))
        if end > start:
            label = phone.label.upper().rstrip("012")  # tolerate stress digits
            cues.append((start, end, SHAPE_OF_PHONE.get(label, OTHER_PHONE_SHAPE)))
            at = end
    if at < end_cs:
        cues.append((at, end_cs, "X"))
    return cues


def _merge(cues: list[Cue]) -> list[Cue]:
    merged: list[Cue] = []
    for start, end, shape in cues:
        if merged and merged[-1][2] == shape:
            merged[-1] = (merged[-1][0], end, shape)
        else:
            merged.append((start, end, shape))
    return merged


def _hold_short_pauses(cues: list[Cue]) -> list[Cue]:
    held = list(cues)
    for i in range(1, len(held) - 1):
        start, end, shape = held[i]
        if shape == "X" and end - start < HOLD_PAUSE_CS:
            held[i] = (start, end, held[i - 1][2])
    return _merge(held)


def _to_basic(cues: list[Cue], keep_rest: bool) -> list[Cue]:
    return [(s, e, v if keep_rest and v == "X" else BASIC_SHAPE.get(v, v)) for s, e, v in cues]


def _absorb_short_cues(cues: list[Cue]) -> list[Cue]:
    """Lengthen or drop cues under MIN_CUE_CS, shortest first, using the longer neighbour.

    Closed lips (A, for P B M) borrow the missing time from that neighbour where it can spare
    it, because a missing closure shows; any other short cue is handed to that neighbour.
    """
    cues = list(cues)
    while len(cues) > 1:
        i = min(range(len(cues)), key=lambda k: cues[k][1] - cues[k][0])
        missing = MIN_CUE_CS - (cues[i][1] - cues[i][0])
        if missing <= 0:
            break
        j = max((k for k in (i - 1, i + 1) if 0 <= k < len(cues)), key=lambda k: cues[k][1] - cues[k][0])
        (si, ei, vi), (sj, ej, vj) = cues[i], cues[j]
        if vi == "A" and ej - sj - missing >= MIN_CUE_CS:
            if j < i:
                cues[j], cues[i] = (sj, ej - missing, vj), (si - missing, ei, vi)
            else:
                cues[i], cues[j] = (si, ei + missing, vi), (sj + missing, ej, vj)
        else:
            lo, hi = min(i, j), max(i, j)
            cues[lo:hi + 1] = [(cues[lo][0], cues[hi][1], vj)]
            cues = _merge(cues)
    return cues


def write_mouth_cues(cues: list[MouthCue], path: Path, sound_file: str, duration_s: float,
                     extended: bool = True) -> None:
    """Write cues as Rhubarb writes them: ``.json`` or ``.tsv`` (times in seconds, 2 decimals).

    The TSV ends with a row at ``duration_s`` showing the rest shape (X, or A without
    extended shapes).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MOUTH_CUE_SUFFIXES:
        raise UsageError(f"mouth cues are written as {' or '.join(MOUTH_CUE_SUFFIXES)}, not '{suffix}'", path)
    text = _cues_json(cues, sound_file, duration_s) if suffix == ".json" else _cues_tsv(cues, duration_s, extended)
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _cues_json(cues: list[MouthCue], sound_file: str, duration_s: float) -> str:
    # Laid out like Rhubarb's own exporter, times printed with 2 decimals as it prints them.
    rows = ",\n".join(
        f'    {{ "start": {c.start_s:.2f}, "end": {c.end_s:.2f}, "value": "{c.shape}" }}' for c in cues
    )
    return (
        "{\n"
        '  "metadata": {\n'
        f'    "soundFile": {json.dumps(sound_file)},\n'
        f'    "duration": {duration_s:.2f}\n'
        "  },\n"
        '  "mouthCues": [\n'
        f"{rows}\n"
        "  ]\n"
        "}\n"
    )


def _cues_tsv(cues: list[MouthCue], duration_s: float, extended: bool) -> str:
    rest = "X" if extended else BASIC_SHAPE["X"]
    return "".join(f"{c.start_s:.2f}\t{c.shape}\n" for c in cues) + f"{duration_s:.2f}\t{rest}\n"
