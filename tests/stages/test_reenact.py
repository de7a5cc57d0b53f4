"""``reenact`` on real media: the astronaut driven by the longest track of Megamind.avi.

Every check runs facecli's own landmarks on the output and compares with the driving track.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import facecli
from facecli import media
from facecli.errors import InputError, NoFaceFound
from facecli.lipsync import mouth_aperture_px
from facecli.portrait import load_portrait
from facecli.stages.reenact import reenact
from tests.conftest import ASTRONAUT, MEGAMIND, frames_on_screen, shown_frames
from facecli.retarget import agreement, eye_openness, inter_ocular_px
from tests.measures import shape_error


def _smoothed(angle_deg: np.ndarray) -> np.ndarray:
    return np.convolve(np.pad(angle_deg, 2, mode="edge"), np.ones(5) / 5, mode="valid")


def longest_track(marks: facecli.Landmarks) -> facecli.Landmarks:
    ids, counts = np.unique(marks.face_id, return_counts=True)
    return marks[marks.face_id == ids[np.argmax(counts)]]


@pytest.fixture(scope="module")
def driver() -> facecli.Landmarks:
    return longest_track(facecli.landmarks(MEGAMIND, smooth=True))


@pytest.fixture(scope="module")
def driven(tmp_path_factory) -> tuple[facecli.Motion, facecli.Landmarks, Path]:
    out = tmp_path_factory.mktemp("reenact") / "astronaut.mp4"
    motion = reenact(ASTRONAUT, MEGAMIND, out, crop=True)
    return motion, facecli.landmarks(out), out


def paired(driver: facecli.Landmarks, output: facecli.Landmarks) -> tuple[facecli.Landmarks, facecli.Landmarks]:
    """The driving track's frames and the same frames of the output's face."""
    output = longest_track(output)
    frames = np.intersect1d(driver.frame_index, output.frame_index)
    assert frames.size >= 0.95 * len(driver)  # the output's face is found wherever the driver's is
    return driver[np.searchsorted(driver.frame_index, frames)], output[np.searchsorted(output.frame_index, frames)]


def test_output_video(driven):
    motion, marks, out = driven
    info = media.probe(out)
    assert (info.width, info.height) == (512, 512) and info.has_audio == media.probe(MEGAMIND).has_audio
    assert len(motion) == 270 and np.unique(marks.frame_index).size == 270
    assert motion.header["driving"]["face_id"] == 0
    # the driving track ends at the cut before frame 98: the motion holds its last pose, never
    # taking up the next shot's face
    after = slice(98, None)
    assert np.ptp(motion.head_pose_deg[after], axis=0).max() == 0 and np.ptp(motion.face_controls[after], axis=0).max() == 0
    assert np.ptp(motion.head_pose_deg[:98], axis=0).max() > 1


def test_motion_follows_the_driver(driver, driven):
    scores = agreement(driver, driven[1])
    assert scores["frames"] >= 0.95 * len(driver)  # the output's face is found wherever the driver's is
    assert scores["mouth"] >= 0.8 and scores["eyes"] >= 0.7
    assert scores["yaw"] >= 0.8 and scores["pitch"] >= 0.8


def test_identity_at_the_reference_frame(driven, tmp_path):
    motion, marks, _ = driven
    still = tmp_path / "source.png"
    media.write_image(still, load_portrait(ASTRONAUT, crop=True).image)
    reference = facecli.landmarks(still).landmarks_478[0].astype(np.float64)
    at_ref = marks[marks.frame_index == motion.header["driving"]["reference_frame"]]
    iod = inter_ocular_px(reference[None])[0]
    assert shape_error(at_ref, reference)[0] / iod <= 0.03


def test_mouth_only_keeps_pose_and_eyes(driver, tmp_path):
    """The head does not move: the motion says so, the upper face's pixels do not change, and
    facecli's yaw and roll stay within 0.5 degrees. (Its pitch does not: MediaPipe's landmarks
    of the upper face shift with the mouth's opening, r = -0.66 on this clip, so measured pitch
    varies by 0.66 degrees with a head that the pixels show is still.)"""
    out = tmp_path / "mouth.mp4"
    motion = reenact(ASTRONAUT, MEGAMIND, out, crop=True, parts=("mouth",))
    assert np.abs(motion.head_pose_deg).max() == 0
    d, o = paired(driver, facecli.landmarks(out))
    for axis in (0, 2):  # yaw, roll
        assert _smoothed(o.head_pose_deg[:, axis]).std() <= 0.5
    first = o.landmarks_478[0]
    box = (int(first[:, 0].min()), int(first[10, 1]), int(first[:, 0].max()), int(first[1, 1]))
    assert np.abs(upper_face_shifts(out, box)).max() < 0.2  # px: the upper face stands still
    still = tmp_path / "source.png"
    media.write_image(still, load_portrait(ASTRONAUT, crop=True).image)
    source_eyes = eye_openness(facecli.landmarks(still).landmarks_478)[0]
    assert np.abs(eye_openness(o.landmarks_478) / source_eyes - 1).max() < 0.15
    dp, op = d.landmarks_478, o.landmarks_478
    assert np.corrcoef(mouth_aperture_px(dp) / inter_ocular_px(dp), mouth_aperture_px(op) / inter_ocular_px(op))[0, 1] >= 0.8


def upper_face_shifts(video: Path, box: tuple[int, int, int, int]) -> np.ndarray:
    """(N, 2) px: each frame's shift of the box (forehead to nose) against the first frame, by
    phase correlation of the pixels (landmarks would add MediaPipe's own jitter)."""
    x0, y0, x1, y1 = box
    frames = [cv2.cvtColor(f.image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float64)
              for f in media.iter_frames(video)]
    window = cv2.createHanningWindow((x1 - x0, y1 - y0), cv2.CV_64F)
    return np.array([cv2.phaseCorrelate(frames[0], f, window)[0] for f in frames])


def test_source_video_keeps_its_own_motion(driver, tmp_path):
    """The astronaut moved along a known path is the source: driving only the mouth, the output
    keeps the path, and the mouth follows the driver."""
    image = load_portrait(ASTRONAUT, crop=True, size=384).image
    frames = 60
    path = np.stack([6 * np.sin(np.arange(frames) / 8), 4 * np.cos(np.arange(frames) / 11)], axis=1)
    def moving(fps: float) -> Path:
        video = tmp_path / f"moving{fps:.0f}.mp4"
        with media.VideoWriter(video, 384, 384, fps, crf=12) as writer:
            for dx, dy in path:
                writer.write(cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), (384, 384),
                                            borderMode=cv2.BORDER_REFLECT))
        return video

    with pytest.raises(InputError, match="frames/s"):  # frames pair one to one: the rates must agree
        reenact(moving(25.0), MEGAMIND, tmp_path / "x.mp4", length="shortest")
    source = moving(media.probe(MEGAMIND).fps)
    with pytest.raises(InputError, match="--length"):
        reenact(source, MEGAMIND, tmp_path / "x.mp4")
    out = tmp_path / "out.mp4"
    reenact(source, MEGAMIND, out, length="shortest", parts=("mouth",))
    marks = longest_track(facecli.landmarks(out))
    assert len(marks) == frames
    first = marks.landmarks_478[0]
    box = (int(first[:, 0].min()), int(first[10, 1]), int(first[:, 0].max()), int(first[1, 1]))
    assert np.abs(upper_face_shifts(out, box) - (path - path[0])).max() <= 1.0
    d, o = paired(driver[driver.frame_index < frames], marks)
    dp, op = d.landmarks_478, o.landmarks_478
    assert np.corrcoef(mouth_aperture_px(dp) / inter_ocular_px(dp), mouth_aperture_px(op) / inter_ocular_px(op))[0, 1] >= 0.7


def test_variable_frame_rate_driver_keeps_the_picture_on_time(vfr_clip, tmp_path):
    """QA's clip (every frame of the first second, then every 6th) driving itself as the source
    video: output frame n shows the frame on screen at n / fps in the driving video, whose audio
    it carries, not its n-th frame."""
    out = tmp_path / "out.mp4"
    motion = reenact(vfr_clip, vfr_clip, out, parts=("mouth",))
    source = list(media.iter_frames(vfr_clip))
    video = list(media.iter_frames(out))
    info = media.probe(out)
    due = frames_on_screen(np.array([f.timestamp_s for f in source]), np.array([f.timestamp_s for f in video]),
                           info.fps)
    assert len(motion) == len(source) == 31 and len(video) == 67 and due[-1] == 30
    assert (shown_frames([f.image for f in video], [f.image for f in source], due) == due).all()
    assert info.fps == pytest.approx(24000 / 1001) and info.duration_s == pytest.approx(67 / info.fps, abs=0.03)


@pytest.mark.parametrize("source, driving, error, words", [
    ("wall", "megamind", NoFaceFound, "no face found in the portrait"),
    ("astronaut", "mute", NoFaceFound, "no face found in the driving video"),
    ("astronaut", "empty", InputError, "empty"),
])
def test_bad_inputs(bad_media, tmp_path, source, driving, error, words):
    files = {**bad_media, "astronaut": ASTRONAUT, "megamind": MEGAMIND}
    out = tmp_path / "out.mp4"
    with pytest.raises(error, match=words):
        reenact(files[source], files[driving], out)
    assert not out.exists()
