"""Lip-sync measures of a talking-face video against its speech.

The mouth is measured with facecli's own landmarks on the video and compared with the
forced alignment of the transcript, so any talking-face video can be scored the same way
(``facecli animate``'s tests and benchmark use it):

* ``bilabial_max``: the highest, over the bilabial phones (p, b, m), of the smallest mouth
  aperture during the phone, as a fraction of the video's largest aperture (the lips must
  meet: small is good);
* ``open_vowel_min``: the lowest, over the open vowels (aa, ae, ah, ao, aw, ay), of the largest
  aperture during the vowel, as the same fraction (the mouth must open: large is good);
* ``loudness_r``: Pearson correlation of the aperture with the speech's loudness envelope
  (RMS level in dB, smoothed over 50 ms).

"During" a phone means the frames within half a frame of its span: at 25 frames/s a 30 ms
phone can fall between two frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .face_rig import mouth_aperture_px
from .speech import SpeechAnalysis, analyse_speech
from .stages.landmarks import landmarks

BILABIALS = frozenset({"P", "B", "M"})
OPEN_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY"})


@dataclass
class LipSyncScore:
    bilabial_max: float
    open_vowel_min: float
    loudness_r: float
    bilabials: int  # how many bilabial phones were scored
    open_vowels: int
    worst: list[tuple[str, float, float]]  # (phone, start s, aperture fraction) of the failing phones


def _frames_near(times_s: np.ndarray, start_s: float, end_s: float, half_frame_s: float) -> np.ndarray:
    near = np.flatnonzero((times_s >= start_s - half_frame_s) & (times_s <= end_s + half_frame_s))
    return near if near.size else np.array([int(np.argmin(np.abs(times_s - 0.5 * (start_s + end_s))))])


def loudness_envelope(speech: SpeechAnalysis, times_s: np.ndarray) -> np.ndarray:
    window = np.hanning(7)[1:-1]
    level = np.convolve(speech.loudness_db, window / window.sum(), mode="same")
    return np.interp(times_s, np.arange(level.size) / speech.frame_rate_hz, level)


def score_lip_sync(video: str | Path, audio: str | Path, transcript: str,
                   bilabial_limit: float = 0.2, open_vowel_limit: float = 0.4) -> LipSyncScore:
    """Score one face's lip sync in ``video`` against ``audio`` said as ``transcript``."""
    marks = landmarks(video)
    if not len(marks):
        return LipSyncScore(np.nan, np.nan, np.nan, 0, 0, [])
    first = marks.face_id == marks.face_id[0]  # one face: the first one tracked
    aperture = mouth_aperture_px(marks.landmarks_478[first])
    times = marks.timestamp_s[first]
    top = float(aperture.max()) or 1.0
    half_frame = 0.5 * float(np.median(np.diff(times))) if times.size > 1 else 0.02
    speech = analyse_speech(audio, transcript)
    closed, opened, worst = [], [], []
    for phone in speech.phones:
        near = _frames_near(times, phone.start_s, phone.end_s, half_frame)
        if phone.label in BILABIALS:
            closed.append(float(aperture[near].min()) / top)
            if closed[-1] > bilabial_limit:
                worst.append((phone.label, phone.start_s, closed[-1]))
        elif phone.label in OPEN_VOWELS:
            opened.append(float(aperture[near].max()) / top)
            if opened[-1] < open_vowel_limit:
                worst.append((phone.label, phone.start_s, opened[-1]))
    r = float(np.corrcoef(aperture, loudness_envelope(speech, times))[0, 1])
    return LipSyncScore(max(closed, default=np.nan), min(opened, default=np.nan), r, len(closed), len(opened), worst)
