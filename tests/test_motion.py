"""Speech to motion: visemes with coarticulation, head motion, blinks, gaze, expressions."""

from __future__ import annotations

import numpy as np
import pytest

from facecli.errors import UsageError
from facecli.motion import MotionOptions, frame_count, generate_motion
from facecli.speech import Phone, SpeechAnalysis, analyse_speech
from tests.conftest import CLIPS


def speech_of(phones: list[tuple[str, float, float]], loud_db: float = -20.0) -> SpeechAnalysis:
    """A synthetic analysis: the given phones, voiced and loud where they are not silence."""
    duration = phones[-1][2]
    n = int(round(duration * 100))
    t = (np.arange(n) + 0.5) / 100
    voiced = np.zeros(n, bool)
    for label, start, end in phones:
        if label != "SIL":
            voiced[(t >= start) & (t < end)] = True
    return SpeechAnalysis(
        duration_s=duration, phones=[Phone(*p) for p in phones], words=[], frame_rate_hz=100.0,
        loudness_db=np.where(voiced, loud_db, -70.0).astype(np.float32), voiced=voiced,
        pitch_hz=np.where(voiced, 120.0, 0.0).astype(np.float32),
    )


@pytest.fixture(scope="module")
def aligned_0880() -> SpeechAnalysis:
    path, text = CLIPS["0880"]
    return analyse_speech(path, text)


def at(motion, name: str, time_s: float) -> float:
    return float(motion.control(name)[int(round(time_s * 25))])


def test_one_row_per_frame_covering_the_audio(aligned_0880):
    motion = generate_motion(aligned_0880, MotionOptions(fps=25))
    assert len(motion) == frame_count(aligned_0880.duration_s, 25) == round(2.99 * 25)
    assert np.allclose(np.diff(motion.timestamp_s), 0.04)
    assert motion.face_controls.min() >= 0 and motion.face_controls.max() <= 1


def test_lips_close_on_bilabials_and_open_on_open_vowels():
    speech = speech_of([("SIL", 0, 0.3), ("AA", 0.3, 0.5), ("B", 0.5, 0.58), ("AA", 0.58, 0.8), ("SIL", 0.8, 1.2)])
    motion = generate_motion(speech, MotionOptions(head_motion=0))
    assert at(motion, "lip_close", 0.54) > 0.9  # the b closes the lips between two open vowels
    assert at(motion, "jaw_open", 0.4) > 0.6 and at(motion, "lip_close", 0.4) < 0.2
    assert at(motion, "jaw_open", 0.68) > 0.6
    assert at(motion, "jaw_open", 1.12) < 0.05  # rest in the pause


def test_rounded_and_spread_vowels():
    speech = speech_of([("SIL", 0, 0.2), ("UW", 0.2, 0.45), ("SIL", 0.45, 0.8), ("IY", 0.8, 1.05), ("SIL", 1.05, 1.4)])
    motion = generate_motion(speech, MotionOptions(head_motion=0))
    assert at(motion, "lip_pucker", 0.32) > 0.7 > at(motion, "lip_pucker", 0.92)
    assert at(motion, "lip_stretch", 0.92) > 0.5 > at(motion, "lip_stretch", 0.32)


def test_coarticulation_blends_rather_than_switching():
    """Jaw opening rises into a vowel and falls out of it over several frames, never a step."""
    speech = speech_of([("SIL", 0, 0.3), ("M", 0.3, 0.38), ("AA", 0.38, 0.6), ("SIL", 0.6, 1.0)])
    jaw = generate_motion(speech, MotionOptions(head_motion=0)).control("jaw_open")
    assert np.abs(np.diff(jaw)).max() < 0.5
    peak = int(np.argmax(jaw))
    assert 0 < jaw[peak - 2] < jaw[peak] and 0 < jaw[peak + 2] < jaw[peak]


def test_short_phones_still_show_on_a_frame():
    """A 30 ms vowel between consonants gets a frame with the jaw open; a 30 ms m one with lips shut."""
    speech = speech_of([("SIL", 0, 0.3), ("T", 0.3, 0.36), ("AH", 0.36, 0.39), ("M", 0.39, 0.42),
                        ("IY", 0.42, 0.55), ("SIL", 0.55, 0.9)])
    motion = generate_motion(speech, MotionOptions(head_motion=0))
    window = slice(int(0.34 * 25), int(0.45 * 25) + 1)
    assert motion.control("jaw_open")[window].max() > 0.5
    assert motion.control("lip_close")[window].max() > 0.95


def test_silence_rests_the_mouth_but_blinks_go_on():
    speech = speech_of([("SIL", 0, 8.0)])
    motion = generate_motion(speech, MotionOptions())
    mouth = motion.face_controls[:, :8]
    assert np.abs(mouth).max() == 0.0
    blink = motion.control("blink_left")
    closed = np.flatnonzero(blink > 0.9)
    assert closed.size, "no full blink in 8 s"
    starts = np.flatnonzero(np.diff((blink > 0.5).astype(int)) == 1)
    assert 1 <= starts.size <= 5  # 17 a minute: about 2 in 8 s
    assert np.array_equal(motion.control("blink_left"), motion.control("blink_right"))
    assert np.all(motion.phone == "SIL")


def test_blink_rate_and_durations():
    speech = speech_of([("SIL", 0, 120.0)])
    blink = generate_motion(speech, MotionOptions(blink_rate_per_min=20)).control("blink_left")
    starts = np.flatnonzero(np.diff((blink > 0.5).astype(int)) == 1)
    assert 25 <= starts.size <= 55  # about 40 in two minutes
    assert generate_motion(speech, MotionOptions(blink_rate_per_min=0)).control("blink_left").max() == 0


def test_head_motion_scale_and_seed(aligned_0880):
    still = generate_motion(aligned_0880, MotionOptions(head_motion=0))
    assert np.abs(still.head_pose_deg).max() == 0
    moving = generate_motion(aligned_0880, MotionOptions(seed=1))
    assert moving.head_pose_deg[:, 0].std() > 1.0 and moving.head_pose_deg[:, 1].std() > 1.0
    assert np.abs(moving.head_pose_deg).max() < 15
    assert np.abs(np.diff(moving.head_pose_deg, axis=0)).max() < 1.5  # smooth: < 1.5 degrees a frame
    again = generate_motion(aligned_0880, MotionOptions(seed=1))
    other = generate_motion(aligned_0880, MotionOptions(seed=2))
    assert np.array_equal(moving.head_pose_deg, again.head_pose_deg)
    assert not np.allclose(moving.head_pose_deg, other.head_pose_deg)
    double = generate_motion(aligned_0880, MotionOptions(seed=1, head_motion=2))
    assert np.allclose(double.head_pose_deg, 2 * moving.head_pose_deg)


def test_brows_rise_on_emphasis_and_gaze_moves(aligned_0880):
    motion = generate_motion(aligned_0880, MotionOptions())
    assert motion.control("brow_raise").max() > 0.2
    assert motion.control("brow_raise")[:5].max() < 0.05  # not during the leading pause
    gaze = motion.gaze_deg
    assert np.abs(gaze).max() <= 6 and np.ptp(gaze[:, 0]) > 0.5


def test_expressions_offset_their_controls(aligned_0880):
    neutral = generate_motion(aligned_0880, MotionOptions())
    happy = generate_motion(aligned_0880, MotionOptions(expression="happy", intensity=1.0))
    sad = generate_motion(aligned_0880, MotionOptions(expression="sad", intensity=0.5))
    assert happy.control("smile").min() > 0.7 and neutral.control("smile").max() == 0
    assert sad.control("frown").min() == pytest.approx(0.35) and sad.control("brow_inner_up").min() > 0.3
    assert np.array_equal(happy.control("jaw_open"), neutral.control("jaw_open"))


def test_bad_options():
    with pytest.raises(UsageError, match="expression"):
        MotionOptions(expression="bored")
    with pytest.raises(UsageError, match="fps"):
        MotionOptions(fps=0)
    with pytest.raises(UsageError, match="head-motion"):
        MotionOptions(head_motion=-1)
