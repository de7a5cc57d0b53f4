from __future__ import annotations

import numpy as np
import pytest

import facecli
from facecli import media
from facecli.backends import Detector, FrameDetections
from facecli.geometry import box_iou
from facecli.stages.detect import DetectOptions, KeyframeDetector

from ..conftest import ASTRONAUT, MEGAMIND


def test_astronaut_has_exactly_one_face_around_the_face(astronaut_faces: facecli.Faces) -> None:
    assert len(astronaut_faces) == 1
    x, y, w, h = astronaut_faces.box_xywh[0]
    # The face (not the helmet or the patch) in the 512x512 portrait: centre near (225, 125).
    assert 190 < x + w / 2 < 260 and 90 < y + h / 2 < 160
    assert 70 < w < 140
    right_eye, left_eye = astronaut_faces.keypoints_6[0, :2]
    assert right_eye[0] < left_eye[0], "the subject's right eye is on the image left"
    assert astronaut_faces.score[0] > 0.8


def test_every_pasted_face_is_found_without_false_positives(group_composite) -> None:
    path, truth = group_composite
    faces = facecli.detect(path)
    iou = box_iou(truth, faces.box_xywh)
    assert iou.max(axis=1).min() >= 0.5, f"missed faces, best IoU per face: {iou.max(axis=1).round(2)}"
    assert len(faces) == len(truth), f"false positives: {faces.box_xywh[iou.max(axis=0) < 0.5]}"


def test_min_size_skips_small_faces(group_composite) -> None:
    path, truth = group_composite
    faces = facecli.detect(path, min_size=90)
    assert 0 < len(faces) < len(truth)
    assert np.maximum(faces.box_xywh[:, 2], faces.box_xywh[:, 3]).min() >= 90


def test_max_faces_keeps_the_best(group_composite) -> None:
    faces = facecli.detect(group_composite[0], max_faces=2)
    assert len(faces) == 2


@pytest.mark.slow
def test_megamind_tracks_keep_ids_within_shots_and_never_reuse_them() -> None:
    faces = facecli.detect(MEGAMIND, every=3)
    assert 0 not in faces.frame_index, "the black first frame has no face"
    for shot in np.unique(faces.shot):
        in_shot = faces[faces.shot == shot]
        biggest = in_shot.face_id[np.argmax(in_shot.box_xywh[:, 2])]
        frames_with_face = np.unique(in_shot.frame_index)
        share = np.isin(frames_with_face, in_shot.frame_index[in_shot.face_id == biggest]).mean()
        assert share > 0.9, f"shot {shot}: the main face changed id ({share:.0%} under one id)"
    ids_per_shot = [set(faces.face_id[faces.shot == s].tolist()) for s in np.unique(faces.shot)]
    for a in range(len(ids_per_shot)):
        for b in range(a + 1, len(ids_per_shot)):
            assert not ids_per_shot[a] & ids_per_shot[b], "an id crossed a shot cut"


def test_one_frame_detections_are_dropped_in_videos(tmp_path) -> None:
    """A blip seen in one frame only (here: a face pasted into frame 5 alone) is not a track."""
    from facecli.media import VideoWriter, read_image

    still = np.full((240, 320, 3), 90, np.uint8)
    face = cv2_resize(read_image(ASTRONAUT)[40:240, 120:330], (100, 95))
    clip = tmp_path / "blip.mp4"
    with VideoWriter(clip, 320, 240, 25.0) as writer:
        for i in range(12):
            frame = still.copy()
            if i == 5 or i >= 8:
                frame[60:155, 110:210] = face
            writer.write(frame)
    kept = facecli.detect(clip)
    assert 5 not in kept.frame_index and set(kept.frame_index.tolist()) >= {8, 9, 10, 11}
    assert 5 in facecli.detect(clip, min_track=1).frame_index


def test_a_dark_photo_is_still_searched(tmp_path) -> None:
    """Blank frames are skipped in videos only: one dim photo (levels 0-11) is searched in full."""
    from PIL import Image

    from facecli.media import read_image

    dark = tmp_path / "dark.png"
    Image.fromarray((read_image(ASTRONAUT) // 22).astype(np.uint8)).save(dark)
    assert len(facecli.detect(dark)) == 1
    assert len(facecli.landmarks(dark)) == 1


def test_a_one_frame_video_keeps_its_face(tmp_path) -> None:
    gif = tmp_path / "still.gif"
    from PIL import Image

    Image.open(ASTRONAUT).convert("RGB").save(gif)
    assert len(facecli.detect(gif)) == 1, "fewer frames than --min-track: nothing to confirm against"


def cv2_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def test_every_n_processes_a_stride_of_frames() -> None:
    from facecli.stages.detect import iter_detect

    processed = []
    for frame, _ in iter_detect(MEGAMIND, DetectOptions(every=50)):
        processed.append(frame.index)
    assert processed == list(range(0, 270, 50))


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(facecli.UsageError):
        DetectOptions(every=0)
    with pytest.raises(facecli.UsageError):
        DetectOptions(scan_every=0)
    with pytest.raises(facecli.UsageError):
        facecli.detect(ASTRONAUT, backend="nope")


class _ScriptedDetector(Detector):
    """Faces at fixed boxes per call: ``detect`` sees ``scene``; ``detect_near`` re-finds
    the asked boxes that are still in the scene (or, with ``follows=False``, cannot)."""

    def __init__(self, follows: bool = True):
        self.scene = np.zeros((0, 4), np.float32)
        self.follows, self.scans = follows, 0

    def _faces(self, boxes: np.ndarray) -> FrameDetections:
        boxes = np.float32(boxes).reshape(-1, 4)
        return FrameDetections(boxes, np.ones(len(boxes), np.float32), np.zeros((len(boxes), 6, 2), np.float32))

    def detect(self, image_rgb: np.ndarray) -> FrameDetections:
        self.scans += 1
        return self._faces(self.scene)

    def detect_near(self, image_rgb: np.ndarray, boxes_xywh: np.ndarray) -> FrameDetections | None:
        if not self.follows:
            return None
        return self._faces([b for b in boxes_xywh if (box_iou(b, self.scene) >= 0.5).any()])


def test_keyframes_scan_on_schedule_and_follow_faces_between() -> None:
    detector, image = _ScriptedDetector(), np.zeros((8, 8, 3), np.uint8)
    keyframes = KeyframeDetector(detector, scan_every=5)
    detector.scene = np.float32([[10, 10, 50, 50]])
    scans = []
    for frame in range(12):
        if frame == 7:  # a face walks in mid-shot: found at the next scheduled scan (frame 10)
            detector.scene = np.float32([[10, 10, 50, 50], [200, 10, 50, 50]])
        before = detector.scans
        found = keyframes.detect(image)
        scans.append(detector.scans > before)
        assert len(found) == (2 if frame >= 10 else 1), frame
    assert [i for i, s in enumerate(scans) if s] == [0, 5, 10]
    detector.scene = detector.scene[1:]  # the first face leaves: a scan at once, on that frame
    before = detector.scans
    assert len(keyframes.detect(image)) == 1 and detector.scans == before + 1
    keyframes.forget()  # a cut: the next frame is scanned, nothing is followed across it
    before = detector.scans
    keyframes.detect(image)
    assert detector.scans == before + 1


def test_a_backend_that_cannot_follow_is_scanned_every_frame() -> None:
    detector = _ScriptedDetector(follows=False)
    detector.scene = np.float32([[10, 10, 50, 50]])
    keyframes = KeyframeDetector(detector, scan_every=10)
    for _ in range(4):
        assert len(keyframes.detect(np.zeros((8, 8, 3), np.uint8))) == 1
    assert detector.scans == 4


@pytest.mark.slow
def test_following_finds_what_a_scan_of_every_frame_finds() -> None:
    """Megamind's first 60 frames (two faces, one of them small): the default (a full scan every
    10 frames, faces followed between) against the detector's full scan on every frame. A scanned
    face is found when a followed box holds its centre (a scan sometimes boxes the same face
    larger); the boxes themselves agree closely."""
    info = media.probe(MEGAMIND)
    detector = DetectOptions().create_detector(info)
    faces = facecli.detect(MEGAMIND)
    found, ious = [], []
    for frame in media.iter_frames(MEGAMIND, info):
        if frame.index >= 60:
            break
        followed = faces.box_xywh[faces.frame_index == frame.index]
        for box in detector.detect(frame.image).boxes_xywh:
            centre = box[:2] + box[2:] / 2
            inside = (followed[:, :2] <= centre) & (centre <= followed[:, :2] + followed[:, 2:])
            found.append(bool(inside.all(axis=1).any()))
            ious.append(box_iou(box, followed).max() if len(followed) else 0.0)
    assert len(found) >= 110 and np.mean(found) >= 0.97, (len(found), np.mean(found))
    assert np.median(ious) >= 0.8
