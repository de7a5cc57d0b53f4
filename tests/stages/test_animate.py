"""``animate`` on real media: lip sync, identity, head motion, silence and bad inputs.

Lip sync is measured the way a user would check it: facecli's own landmarks on the output,
against the forced alignment of the clip's transcript. The tests render with ``crop`` (the
astronaut's face at 512 px), where the landmarks resolve the mouth well.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import facecli
from facecli import media
from facecli.errors import InputError, NoFaceFound
from facecli.face_rig import RIGHT_LOWER_LID, RIGHT_UPPER_LID
from facecli.formats import read_table
from facecli.lipsync import mouth_aperture_px, score_lip_sync
from facecli.speech import AnalysisStopped, SpeechAnalysis, analyse_speech
from facecli.portrait import load_portrait
from facecli.stages import animate as animate_stage
from facecli.stages.animate import animate, motion_path
from tests.conftest import ASTRONAUT, CLIPS, concatenate_wavs, write_wav
from tests.measures import shape_error

FPS = 25.0


@dataclass
class Rendered:
    video: Path
    motion: facecli.results.Motion
    marks: facecli.Landmarks
    speech: SpeechAnalysis  # forced alignment of the transcript


def render(tmp: Path, audio: Path, transcript: str | None, **options) -> Rendered:
    video = tmp / f"{audio.stem}.mp4"
    motion = animate(ASTRONAUT, audio, video, transcript=transcript, crop=True, **options)
    marks = facecli.landmarks(video)
    speech = analyse_speech(audio, transcript) if transcript else None
    return Rendered(video, motion, marks, speech)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Rendered]:
    tmp = tmp_path_factory.mktemp("animate")
    return {clip: render(tmp, path, text) for clip, (path, text) in CLIPS.items()}


def test_video_file(clips):
    r = clips["0880"]
    info = media.probe(r.video)
    assert info.kind == "video" and info.has_audio
    assert info.width % 2 == 0 and info.height % 2 == 0 and (info.width, info.height) == (512, 512)
    assert abs(info.duration_s - r.speech.duration_s) <= 1 / FPS + 1e-3
    frames = 0
    for frame in media.iter_frames(r.video):
        frames += 1
        assert 60 < frame.image.mean() < 200 and frame.image.std() > 30  # not blank, not broken
    assert frames == len(r.motion) == round(r.speech.duration_s * FPS)
    assert len(r.marks) == frames and np.unique(r.marks.frame_index).size == frames  # one face, every frame


@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_lip_sync(clips, clip):
    path, text = CLIPS[clip]
    score = score_lip_sync(clips[clip].video, path, text)
    assert score.bilabials >= 2 and score.open_vowels >= 5
    assert score.worst == []  # every p/b/m at most 20% of the widest opening, every open vowel at least 40%
    assert score.bilabial_max <= 0.2 and score.open_vowel_min >= 0.4
    assert score.loudness_r >= 0.5


def test_lip_sync_with_phone_recognition(tmp_path):
    """The default, no transcript: on the issue's clip the mouth still meets every target.
    (On 0870 and 0890 it does not: docs/benchmarks.md says which vowels and why.)"""
    path, text = CLIPS["0880"]
    recognised = render(tmp_path, path, None)
    score = score_lip_sync(recognised.video, path, text)
    assert score.worst == [] and score.loudness_r >= 0.5


def test_identity_does_not_drift_over_30_seconds(tmp_path):
    """All three clips twice (31 s): the face keeps its shape, first seconds to last."""
    long = concatenate_wavs([CLIPS[c][0] for c in sorted(CLIPS)] * 2, tmp_path / "long.wav")
    r = render(tmp_path, long, None)
    assert len(r.marks) >= 30 * FPS
    reference = portrait_landmarks(tmp_path)
    iod = np.linalg.norm(reference[468, :2] - reference[473, :2])
    error = shape_error(r.marks, reference) / iod
    assert np.percentile(error, 95) <= 0.03
    first, last = error[: int(5 * FPS)].mean(), error[-int(5 * FPS):].mean()
    assert last <= first + 0.005  # no drift
    yaw, pitch = r.marks.head_pose_deg[:, 0], r.marks.head_pose_deg[:, 1]
    assert _smoothed(yaw).std() >= 1.0 and _smoothed(pitch).std() >= 1.0


def _smoothed(angle_deg: np.ndarray) -> np.ndarray:
    """A 0.2 s moving average: head pose without the landmarks' frame-to-frame jitter."""
    return np.convolve(np.pad(angle_deg, 2, mode="edge"), np.ones(5) / 5, mode="valid")


def portrait_landmarks(tmp: Path) -> np.ndarray:
    """facecli's landmarks on the portrait as the output frames it (cropped to 512 px)."""
    still = tmp / "portrait.png"
    media.write_image(still, load_portrait(ASTRONAUT, crop=True).image)
    return facecli.landmarks(still).landmarks_478[0].astype(np.float64)


def test_head_motion_zero_keeps_the_head_still(tmp_path):
    path, text = CLIPS["0870"]
    r = render(tmp_path, path, text, head_motion=0.0)
    assert np.abs(r.motion.head_pose_deg).max() == 0.0
    pose = r.marks.head_pose_deg
    for axis in range(3):
        assert _smoothed(pose[:, axis]).std() <= 0.5, f"axis {axis}"


def test_silence_keeps_the_mouth_closed_and_blinks(tmp_path):
    r = render(tmp_path, write_wav(tmp_path / "silence.wav", np.zeros(16000 * 6)), None)
    points = r.marks.landmarks_478
    iod = np.linalg.norm(points[:, 468, :2] - points[:, 473, :2], axis=1)
    assert (mouth_aperture_px(points) / iod).max() < 0.04  # closed: under 4% of the eye distance
    eye = (points[:, RIGHT_LOWER_LID[1:-1], 1] - points[:, RIGHT_UPPER_LID[1:-1], 1]).mean(1)
    seen = eye < 0.65 * np.median(eye)  # the landmarks see the lids close
    assert seen.any(), "no blink seen in 6 s of silence"
    assert np.all(r.motion.control("blink_right")[seen] > 0.5)  # ... exactly when the motion blinks
    assert np.all(r.motion.phone == "SIL")


def test_motion_and_exchange_files(clips, tmp_path):
    r = clips["0880"]
    motion = read_table(motion_path(r.video))
    assert len(motion) == len(r.motion) and motion.header["audio"]["duration_s"] == pytest.approx(2.99, abs=0.01)
    said = set(motion.phone.tolist())
    assert {"SIL", "AA", "P", "M"} <= said


@pytest.mark.parametrize("case, error, words", [
    ("no_face", NoFaceFound, "no face"),
    ("mute", InputError, "no audio"),
    ("garbage", InputError, "cannot decode"),
    ("empty", InputError, "empty"),
])
def test_bad_inputs(bad_media, tmp_path, case, error, words):
    portrait = bad_media["wall"] if case == "no_face" else ASTRONAUT
    audio = CLIPS["0880"][0] if case == "no_face" else bad_media[case]
    out = tmp_path / "out.mp4"
    with pytest.raises(error, match=words):
        animate(portrait, audio, out)
    assert not out.exists() and not motion_path(out).exists()


def test_a_faceless_portrait_stops_the_speech_analysis(bad_media, tmp_path, monkeypatch):
    """The speech is analysed while the portrait loads; the portrait's error stops it at once."""
    outcome = []

    def analysis_that_waits(audio, transcript=None, stop=None):
        stop.wait(30.0)  # as if the audio were long: still running when the portrait fails
        try:
            return analyse_speech(audio, transcript, stop=stop)
        except AnalysisStopped:
            outcome.append("stopped")
            raise

    monkeypatch.setattr(animate_stage, "analyse_speech", analysis_that_waits)
    monkeypatch.setattr(animate_stage, "_speech_kept", {})  # not served from an earlier test's analysis
    with pytest.raises(NoFaceFound):
        animate(bad_media["wall"], CLIPS["0880"][0], tmp_path / "out.mp4")
    assert outcome == ["stopped"]


def test_a_batch_analyses_each_audio_once(tmp_path, monkeypatch):
    calls = []

    def counted(audio, transcript=None, stop=None):
        calls.append(Path(audio).name)
        return analyse_speech(audio, transcript, stop=stop)

    monkeypatch.setattr(animate_stage, "analyse_speech", counted)
    monkeypatch.setattr(animate_stage, "_speech_kept", {})
    audio = write_wav(tmp_path / "speech.wav", np.zeros(16000))
    for i in range(2):
        animate(ASTRONAUT, audio, tmp_path / f"first{i}.mp4", motion_only=True)
    assert calls == ["speech.wav"]
    write_wav(audio, np.full(16000, 0.01))  # other content, same size: analysed again
    animate(ASTRONAUT, audio, tmp_path / "same_size.mp4", motion_only=True)
    write_wav(audio, np.zeros(24000))  # longer
    motion = animate(ASTRONAUT, audio, tmp_path / "changed.mp4", motion_only=True)
    assert calls == ["speech.wav"] * 3 and len(motion) == 38  # 1.5 s at 25 frames/s


def test_odd_sized_portrait_gives_an_even_video_of_its_own_size(tmp_path):
    odd = tmp_path / "odd.png"
    media.write_image(odd, media.read_image(ASTRONAUT)[20:321, 100:399])  # 301 x 299
    out = tmp_path / "odd.mp4"
    animate(odd, write_wav(tmp_path / "quiet.wav", np.zeros(16000)), out)
    info = media.probe(out)
    assert (info.width, info.height) == (298, 300)


def test_face_id_picks_which_face_moves(tmp_path, group_composite):
    """In a group photo only the chosen face moves; the largest is the default."""
    path, _ = group_composite
    marks = facecli.landmarks(path)
    largest = int(marks.face_id[np.argmax(marks.box_xywh[:, 2] * marks.box_xywh[:, 3])])
    other = int(marks.face_id[np.argsort(marks.box_xywh[:, 2])[-2]])  # the second largest
    quiet = write_wav(tmp_path / "quiet.wav", np.zeros(3 * 16000))
    assert animate(path, quiet, tmp_path / "default.mp4", motion_only=True).face_id[0] == largest
    animate(path, quiet, tmp_path / "other.mp4", face_id=other, blink_rate=60, head_motion=3)
    still = media.read_image(path).astype(int)
    changed = np.zeros(still.shape[:2], bool)
    for frame in media.iter_frames(tmp_path / "other.mp4"):
        changed |= np.abs(frame.image.astype(int) - still).max(axis=2) > 40
    boxes = {int(f): b for f, b in zip(marks.face_id, marks.box_xywh)}
    def moved(face: int) -> bool:  # noqa: E306 - one line of logic
        x, y, w, h = boxes[face].astype(int)
        return bool(changed[y:y + h, x:x + w].any())
    assert moved(other) and not moved(largest)
