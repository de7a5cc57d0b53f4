"""Speech to face motion: visemes with coarticulation, prosodic head motion, blinks and gaze.

* **Mouth.** Each phone has a target mouth shape (jaw open, lips closed, pressed, stretched,
  puckered, funnelled, lips raised or lowered) and, per control, a dominance that decays
  exponentially away from the phone's centre (Cohen and Massaro's coarticulation model). Each
  frame's control is the dominance-weighted mean of the phones' targets, so shapes blend
  into each other; bilabials (p, b, m) dominate lip closure strongly and briefly, so the lips
  meet even between open vowels. The jaw opening is scaled by the loudness of the speech.
* **Head.** Smooth seeded random sway (stronger while speaking), a nod on each stressed
  syllable (the loudest vowels), the head rising with the pitch of the voice, and breathing;
  all scaled by ``head_motion`` (0 keeps the head still). Brows rise on the most emphatic
  syllables.
* **Eyes.** Blinks at ``blink_rate_per_min`` with natural durations (fast closing, slower
  opening), and small gaze saccades between fixations.
* **Expression.** A constant offset of the controls (happy, sad, ...), times ``intensity``.

Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UsageError
from .results import FACE_CONTROLS, Motion
from .speech import SpeechAnalysis

MOUTH_CONTROLS = ("jaw_open", "lip_close", "lip_press", "lip_stretch", "lip_pucker", "lip_funnel",
                  "upper_lip_raise", "lower_lip_down")

# Mouth targets per ARPAbet phone (controls not named are 0).
VISEMES: dict[str, dict[str, float]] = {
    "SIL": {},
    "P": {"jaw_open": 0.08, "lip_close": 1.0, "lip_press": 0.6},
    "B": {"jaw_open": 0.08, "lip_close": 1.0, "lip_press": 0.4},
    "M": {"jaw_open": 0.06, "lip_close": 1.0, "lip_press": 0.3},
    "F": {"jaw_open": 0.12, "lip_close": 0.7, "upper_lip_raise": 0.3},
    "V": {"jaw_open": 0.12, "lip_close": 0.7, "upper_lip_raise": 0.3},
    "TH": {"jaw_open": 0.25, "lip_stretch": 0.1},
    "DH": {"jaw_open": 0.22, "lip_stretch": 0.1},
    "T": {"lip_close": 0.4, "jaw_open": 0.18, "lip_stretch": 0.2},
    "D": {"lip_close": 0.4, "jaw_open": 0.18, "lip_stretch": 0.2},
    "N": {"lip_close": 0.4, "jaw_open": 0.16, "lip_stretch": 0.15},
    "L": {"jaw_open": 0.3, "lip_stretch": 0.1},
    "S": {"lip_close": 0.4, "jaw_open": 0.1, "lip_stretch": 0.4},
    "Z": {"lip_close": 0.4, "jaw_open": 0.1, "lip_stretch": 0.4},
    "SH": {"jaw_open": 0.15, "lip_funnel": 0.7, "lip_pucker": 0.3},
    "ZH": {"jaw_open": 0.15, "lip_funnel": 0.7, "lip_pucker": 0.3},
    "CH": {"jaw_open": 0.15, "lip_funnel": 0.6, "lip_pucker": 0.3},
    "JH": {"jaw_open": 0.15, "lip_funnel": 0.6, "lip_pucker": 0.3},
    "K": {"jaw_open": 0.25},
    "G": {"jaw_open": 0.25},
    "NG": {"jaw_open": 0.2},
    "HH": {"jaw_open": 0.35},
    "R": {"jaw_open": 0.2, "lip_pucker": 0.4, "lip_funnel": 0.2},
    "Y": {"jaw_open": 0.15, "lip_stretch": 0.4},
    "W": {"jaw_open": 0.1, "lip_pucker": 0.9},
    "AA": {"jaw_open": 1.0},
    "AE": {"jaw_open": 0.8, "lip_stretch": 0.3},
    "AH": {"jaw_open": 0.7},
    "AO": {"jaw_open": 0.8, "lip_funnel": 0.4},
    "AW": {"jaw_open": 0.8, "lip_pucker": 0.3},
    "AY": {"jaw_open": 0.85, "lip_stretch": 0.2},
    "EH": {"jaw_open": 0.55, "lip_stretch": 0.3},
    "ER": {"jaw_open": 0.3, "lip_pucker": 0.4, "lip_funnel": 0.3},
    "EY": {"jaw_open": 0.45, "lip_stretch": 0.4},
    "IH": {"jaw_open": 0.35, "lip_stretch": 0.4},
    "IY": {"jaw_open": 0.25, "lip_stretch": 0.7},
    "OW": {"jaw_open": 0.5, "lip_pucker": 0.6, "lip_funnel": 0.3},
    "OY": {"jaw_open": 0.5, "lip_pucker": 0.5},
    "UH": {"jaw_open": 0.35, "lip_pucker": 0.5},
    "UW": {"jaw_open": 0.25, "lip_pucker": 1.0},
}
VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})
OPEN_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY"})
BILABIALS = frozenset({"P", "B", "M"})
# (control, dominance) where a phone class must win: lips must meet on p/b/m and round on w.
_STRONG = {**{p: {"lip_close": 30.0, "lip_press": 30.0, "jaw_open": 4.0} for p in BILABIALS},
           "F": {"lip_close": 8.0}, "V": {"lip_close": 8.0}, "W": {"lip_pucker": 8.0}, "UW": {"lip_pucker": 4.0}}

EXPRESSIONS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"smile": 0.8, "eye_squint": 0.3, "brow_raise": 0.1},
    "sad": {"frown": 0.7, "brow_inner_up": 0.8, "lip_press": 0.2},
    "angry": {"brow_down": 0.9, "lip_press": 0.4, "nose_sneer": 0.3, "eye_squint": 0.3},
    "surprised": {"brow_raise": 0.9, "eye_wide": 0.8, "jaw_open": 0.12},
    "disgusted": {"nose_sneer": 0.8, "upper_lip_raise": 0.5, "brow_down": 0.4, "eye_squint": 0.3},
    "fearful": {"brow_inner_up": 0.8, "brow_raise": 0.4, "eye_wide": 0.8, "lip_stretch": 0.5},
}

# The jaw follows the vowels; consonants shape the lips and tongue more than the jaw opening.
CONSONANT_JAW_DOMINANCE = 0.5
SILENCE_DOMINANCE = np.array([3.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])  # pauses close the jaw first
OPEN_VOWEL_JAW_DOMINANCE = 6.0  # open vowels open the jaw even when short and between consonants
LOUDNESS_RANGE_DB = 20.0  # the jaw opens less for sounds this far below the speech's loud peaks

HEAD_SWAY_DEG = np.array([4.0, 4.5, 1.2])  # yaw, pitch, roll standard deviation while speaking
NOD_DEG = 2.5
BREATH_HZ, BREATH_DEG = 0.25, 0.3
BLINK_CLOSED_S = 0.05
GAZE_STD_DEG = np.array([2.5, 1.5])


@dataclass(frozen=True)
class MotionOptions:
    fps: float = 25.0
    expression: str = "neutral"
    intensity: float = 0.7  # 0-1, of the expression
    head_motion: float = 1.0  # scale of all head motion; 0 keeps the head still
    blink_rate_per_min: float = 17.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.expression not in EXPRESSIONS:
            raise UsageError(f"unknown expression {self.expression!r}; choose one of {', '.join(EXPRESSIONS)}")
        if not 1.0 <= self.fps <= 120.0:
            raise UsageError(f"fps must be within 1-120, got {self.fps}")
        for name in ("intensity", "head_motion", "blink_rate_per_min"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name.replace('_', '-')} must not be negative")


def frame_count(duration_s: float, fps: float) -> int:
    """Frames covering the audio: its duration to the nearest frame, at least one."""
    return max(1, int(round(duration_s * fps)))


def _contour_at(values: np.ndarray, rate_hz: float, times_s: np.ndarray) -> np.ndarray:
    if values.size == 0:
        return np.zeros_like(times_s)
    return np.interp(times_s, np.arange(values.size) / rate_hz, values.astype(np.float64))


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or x.size == 0:
        return x
    kernel = np.hanning(width + 2)[1:-1]
    return np.convolve(np.pad(x, width, mode="edge"), kernel / kernel.sum(), mode="same")[width:-width]


def mouth_controls(speech: SpeechAnalysis, times_s: np.ndarray) -> np.ndarray:
    """(T, len(MOUTH_CONTROLS)) coarticulated mouth controls at the given times."""
    k = len(MOUTH_CONTROLS)
    weighted = np.zeros((times_s.size, k))
    total = np.full((times_s.size, k), 1e-6)
    # A phone shorter than a frame is widened to 1.2 frames, so some frame shows it.
    min_duration = 1.2 / _rate(times_s)
    for phone in speech.phones:
        duration = max(phone.end_s - phone.start_s, min_duration)
        centre = 0.5 * (phone.start_s + phone.end_s)
        reach = 0.5 * duration + 0.01  # dominance falls to 1/e 10 ms past the phone's edge
        lo, hi = np.searchsorted(times_s, [centre - 6 * reach, centre + 6 * reach])
        if hi <= lo:
            continue
        target = VISEMES.get(phone.label, {})
        strength = _STRONG.get(phone.label, {})
        alpha = np.array([strength.get(name, 1.0) for name in MOUTH_CONTROLS])
        if phone.label == "SIL":
            alpha[:] = SILENCE_DOMINANCE
        if phone.label in OPEN_VOWELS:
            alpha[0] *= OPEN_VOWEL_JAW_DOMINANCE
        elif phone.label not in VOWELS and "jaw_open" not in strength:
            alpha[0] *= CONSONANT_JAW_DOMINANCE
        values = np.array([target.get(name, 0.0) for name in MOUTH_CONTROLS])
        dt = np.abs(times_s[lo:hi] - centre)[:, None]
        # Strong controls hold through their phone and let go within ~20 ms after it (Gaussian).
        sharp = np.exp(-2.0 * (dt / (0.5 * duration + 0.005)) ** 2)
        held = np.array([name in strength for name in MOUTH_CONTROLS])
        dominance = alpha * np.where(held, sharp, np.exp(-dt / reach))
        weighted[lo:hi] += dominance * values
        total[lo:hi] += dominance
    out = weighted / total
    loud = _contour_at(speech.loudness_db, speech.frame_rate_hz, times_s)
    voiced = _contour_at(speech.voiced.astype(np.float64), speech.frame_rate_hz, times_s) > 0.5
    if voiced.any():
        top = np.percentile(loud[voiced], 95)
        gain = np.clip((loud - (top - LOUDNESS_RANGE_DB)) / LOUDNESS_RANGE_DB, 0.0, 1.0)
        out[:, 0] *= 0.05 + 0.95 * _smooth(gain, 3)
    _key_frames(speech, times_s, out)
    return np.clip(out, 0.0, 1.0)


def _key_frames(speech: SpeechAnalysis, times_s: np.ndarray, mouth: np.ndarray) -> None:
    """Make every bilabial and open vowel show on a frame of its own, as animators key them.

    Each claims the free frame nearest its centre within half a frame of its span (bilabials
    first): there the lips are shut (bilabial) or apart with the jaw at least at 90% of the
    vowel's target. Without this a 30 ms vowel between a t and a b can fall between frames.
    """
    half_frame = 0.5 / _rate(times_s)
    claimed = np.zeros(times_s.size, bool)
    close, jaw = MOUTH_CONTROLS.index("lip_close"), MOUTH_CONTROLS.index("jaw_open")
    keyed = [p for p in speech.phones if p.label in BILABIALS] + [p for p in speech.phones if p.label in OPEN_VOWELS]
    for phone in keyed:
        lo, hi = np.searchsorted(times_s, [phone.start_s - half_frame, phone.end_s + half_frame])
        free = [i for i in range(lo, hi) if not claimed[i]]
        if not free:
            continue
        centre = 0.5 * (phone.start_s + phone.end_s)
        frame = min(free, key=lambda i: abs(times_s[i] - centre))
        claimed[frame] = True
        if phone.label in BILABIALS:
            mouth[frame, close] = 1.0
        else:
            mouth[frame, close] = min(mouth[frame, close], 0.1)
            mouth[frame, jaw] = max(mouth[frame, jaw], 0.9 * VISEMES[phone.label]["jaw_open"])


def _phone_at(speech: SpeechAnalysis, times_s: np.ndarray) -> np.ndarray:
    if not speech.phones:
        return np.full(times_s.size, "SIL")
    starts = np.array([p.start_s for p in speech.phones])
    labels = np.array([p.label for p in speech.phones])
    return labels[np.clip(np.searchsorted(starts, times_s, side="right") - 1, 0, len(labels) - 1)]


def _add_bump(target: np.ndarray, times_s: np.ndarray, centre_s: float, height: float,
              rise_s: float = 0.12, fall_s: float = 0.35) -> None:
    """Add (in place) a smooth pulse peaking at centre_s: quick rise, slower decay, 4 sigma wide."""
    lo, hi = np.searchsorted(times_s, [centre_s - 4 * rise_s, centre_s + 4 * fall_s])
    dt = times_s[lo:hi] - centre_s
    target[lo:hi] += height * np.where(dt < 0, np.exp(-0.5 * (dt / rise_s) ** 2), np.exp(-0.5 * (dt / fall_s) ** 2))


def _stressed(speech: SpeechAnalysis) -> list[tuple[float, float]]:
    """(time s, strength 0-1) of stressed syllables: vowels louder than most of the others."""
    vowels = [p for p in speech.phones if p.label in VOWELS and p.end_s - p.start_s >= 0.05]
    if not vowels:
        return []
    centres = np.array([0.5 * (p.start_s + p.end_s) for p in vowels])
    loud = _contour_at(speech.loudness_db, speech.frame_rate_hz, centres)
    pitch = _contour_at(speech.pitch_hz, speech.frame_rate_hz, centres)
    score = loud + 0.05 * np.where(pitch > 0, pitch - np.median(pitch[pitch > 0]) if (pitch > 0).any() else 0, 0)
    cut = np.percentile(score, 65)
    spread = max(float(score.max() - cut), 1e-6)
    return [(float(c), float((s - cut) / spread)) for c, s in zip(centres, score) if s >= cut]


def _sway(rng: np.random.Generator, times_s: np.ndarray) -> np.ndarray:
    """(T, 3) smooth random motion with unit standard deviation per axis (sums of slow sines)."""
    out = np.zeros((times_s.size, 3))
    for axis in range(3):
        freqs = rng.uniform(0.15, 0.6, 4)
        phases = rng.uniform(0, 2 * np.pi, 4)
        out[:, axis] = np.sin(2 * np.pi * freqs[None, :] * times_s[:, None] + phases).sum(axis=1) / np.sqrt(2.0)
    return out


def head_motion(speech: SpeechAnalysis, times_s: np.ndarray, rng: np.random.Generator,
                stressed: list[tuple[float, float]]) -> np.ndarray:
    """(T, 3) yaw, pitch, roll in degrees (before the head_motion scale)."""
    voiced = _contour_at(speech.voiced.astype(np.float64), speech.frame_rate_hz, times_s)
    activity = _smooth(voiced, max(3, int(round(1.0 * _rate(times_s)))))
    pose = _sway(rng, times_s) * HEAD_SWAY_DEG * (0.4 + 0.6 * activity)[:, None]
    for centre, strength in stressed:
        _add_bump(pose[:, 1], times_s, centre, NOD_DEG * (0.5 + 0.5 * strength))
        _add_bump(pose[:, 0], times_s, centre, rng.normal(0.0, 0.5))
    pitch = _contour_at(speech.pitch_hz, speech.frame_rate_hz, times_s)
    if (pitch > 0).any():
        ref = np.median(pitch[pitch > 0])
        rise = np.where(pitch > 0, np.clip((pitch - ref) / ref, -0.5, 0.5), 0.0)
        pose[:, 1] -= 2.0 * _smooth(rise, max(3, int(round(0.3 * _rate(times_s)))))  # higher voice: chin up
    pose[:, 1] += BREATH_DEG * np.sin(2 * np.pi * BREATH_HZ * times_s)
    return pose


def _rate(times_s: np.ndarray) -> float:
    return 1.0 / float(times_s[1] - times_s[0]) if times_s.size > 1 else 25.0


def blinks(times_s: np.ndarray, rate_per_min: float, rng: np.random.Generator) -> np.ndarray:
    """(T,) lid closure 0-1: blinks spaced like a person's (at least 1.2 s apart)."""
    out = np.zeros(times_s.size)
    if rate_per_min <= 0 or times_s.size == 0:
        return out
    mean_gap = 60.0 / rate_per_min
    t = rng.uniform(0.3, min(mean_gap, 2.0))
    end = float(times_s[-1])
    while t <= end:
        closing, opening = rng.uniform(0.05, 0.09), rng.uniform(0.1, 0.2)
        lo, hi = np.searchsorted(times_s, [t, t + closing + BLINK_CLOSED_S + opening])
        dt = times_s[lo:hi] - t
        # closed for 50 ms: long enough for a frame at 20 fps or more to show the lid shut
        shape = np.where(dt < closing, dt / closing, 1.0 - (dt - closing - BLINK_CLOSED_S) / opening)
        shape = np.where((dt >= closing) & (dt <= closing + BLINK_CLOSED_S), 1.0, shape)
        out[lo:hi] = np.maximum(out[lo:hi], np.clip(shape, 0.0, 1.0) ** 0.7)
        t += max(1.2, rng.gamma(3.0, mean_gap / 3.0))
    return out


def gaze(times_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(T, 2) gaze yaw, pitch degrees: fixations joined by quick (40 ms) saccades."""
    out = np.zeros((times_s.size, 2))
    if times_s.size == 0:
        return out
    t, current = 0.0, np.zeros(2)
    end = float(times_s[-1])
    while t <= end:
        target = np.clip(rng.normal(0.0, GAZE_STD_DEG), -6.0, 6.0)
        hold = max(0.3, rng.exponential(1.2))
        lo, hi = np.searchsorted(times_s, [t, t + hold])
        step = np.clip((times_s[lo:hi] - t) / 0.04, 0.0, 1.0)[:, None]
        out[lo:hi] = current + (target - current) * step
        current = target
        t += hold
    return out


def generate_motion(speech: SpeechAnalysis, options: MotionOptions, face_id: int = 0) -> Motion:
    """Per-frame motion for a talking face: ``frame_count(duration, fps)`` rows."""
    n = frame_count(speech.duration_s, options.fps)
    times_s = np.arange(n) / options.fps
    rng = np.random.default_rng(options.seed)
    controls = np.zeros((n, len(FACE_CONTROLS)))
    controls[:, [FACE_CONTROLS.index(c) for c in MOUTH_CONTROLS]] = mouth_controls(speech, times_s)
    for name, value in EXPRESSIONS[options.expression].items():
        controls[:, FACE_CONTROLS.index(name)] += options.intensity * value
    stressed = _stressed(speech)
    brow = FACE_CONTROLS.index("brow_raise")
    for centre, strength in stressed:
        if strength > 0.5:  # emphasis: the brows rise with the loudest syllables
            _add_bump(controls[:, brow], times_s, centre, 0.45 * strength, 0.1, 0.3)
    closure = blinks(times_s, options.blink_rate_per_min, rng)
    controls[:, FACE_CONTROLS.index("blink_left")] = closure
    controls[:, FACE_CONTROLS.index("blink_right")] = closure
    pose = head_motion(speech, times_s, rng, stressed) * options.head_motion
    return Motion(
        frame_index=np.arange(n), timestamp_s=times_s, face_id=np.full(n, face_id), shot=np.zeros(n),
        face_controls=np.clip(controls, 0.0, 1.0), head_pose_deg=pose, gaze_deg=gaze(times_s, rng),
        phone=_phone_at(speech, times_s),
    )
