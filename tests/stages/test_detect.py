from __future__ import annotations

import numpy as np
import pytest

import facecli
from facecli import media
from facecli.backends import Detector, FrameDetections
from facecli.geometry import box_centres, box_iou, points_in_boxes
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
    """Faces at fixed boxes: ``detect`` (a scan) sees the ``scene``; ``detect_near`` re-finds
    the asked boxes that are still in the scene, scored ``near_score``."""

    def __init__(self, follows: bool = True, near_score: float = 1.0):
        self.scene = np.zeros((0, 4), np.float32)
        self.follows, self.near_score, self.scans = follows, near_score, 0

    @staticmethod
    def _faces(boxes: object, score: float) -> FrameDetections:
        boxes = np.float32(boxes).reshape(-1, 4)
        return FrameDetections(boxes, np.full(len(boxes), score, np.float32), np.zeros((len(boxes), 6, 2), np.float32))

    def detect(self, image_rgb: np.ndarray) -> FrameDetections:
        self.scans += 1
        return self._faces(self.scene, 1.0)

    def detect_near(self, image_rgb: np.ndarray, boxes_xywh: np.ndarray) -> FrameDetections:
        return self._faces([b for b in boxes_xywh if (box_iou(b, self.scene) >= 0.5).any()], self.near_score)


FACE_A, FACE_B = [10, 10, 50, 50], [200, 10, 50, 50]
NO_IMAGE = np.zeros((8, 8, 3), np.uint8)


def _scanned_frames(keyframes: KeyframeDetector, detector: _ScriptedDetector, scenes: dict[int, list],
                    frames: int) -> tuple[list[int], list[int]]:
    """(frames that were scanned, faces found per frame), the scene changing at ``scenes``' frames."""
    scanned, counts = [], []
    for frame in range(frames):
        if frame in scenes:
            detector.scene = np.float32(scenes[frame]).reshape(-1, 4)
        before = detector.scans
        counts.append(len(keyframes.detect(NO_IMAGE)))
        if detector.scans > before:
            scanned.append(frame)
    return scanned, counts


def test_keyframes_scan_on_schedule_and_follow_faces_between() -> None:
    detector = _ScriptedDetector()
    keyframes = KeyframeDetector(detector, DetectOptions(scan_every=5))
    # A face walks in mid-shot (frame 7): found at the next scheduled scan (frame 10); the first
    # face leaves (frame 12): that frame is scanned at once.
    scanned, counts = _scanned_frames(keyframes, detector, {0: [FACE_A], 7: [FACE_A, FACE_B], 12: [FACE_B]}, 13)
    assert scanned == [0, 5, 10, 12]
    assert counts == [1] * 10 + [2, 2, 1]
    keyframes.forget()  # a cut: the next frame is scanned, nothing is followed across it
    assert _scanned_frames(keyframes, detector, {}, 1)[0] == [0]


def test_a_fade_in_is_scanned_every_frame_until_a_face_shows() -> None:
    detector = _ScriptedDetector()
    keyframes = KeyframeDetector(detector, DetectOptions(scan_every=5))
    scanned, counts = _scanned_frames(keyframes, detector, {0: [], 3: [FACE_A]}, 9)
    assert scanned == [0, 1, 2, 3, 8] and counts[3] == 1
    # Past the shot's first scan_every frames an empty view is scanned on schedule only.
    scanned, _ = _scanned_frames(keyframes, detector, {0: []}, 12)
    assert scanned == [0, 5, 10]


def test_a_backend_that_cannot_follow_is_scanned_every_frame() -> None:
    for detector, options in ((_ScriptedDetector(follows=False), DetectOptions()),
                              (_ScriptedDetector(), DetectOptions(scan_every=1))):
        keyframes = KeyframeDetector(detector, options)
        scanned, counts = _scanned_frames(keyframes, detector, {0: [], 12: [FACE_A]}, 14)
        assert scanned == list(range(14)) and counts == [0] * 12 + [1, 1]


def test_a_keyframe_drops_a_weak_followed_face_its_scan_does_not_confirm() -> None:
    detector = _ScriptedDetector(near_score=0.4)  # below --min-score 0.5: kept only while followed
    keyframes = KeyframeDetector(detector, DetectOptions(scan_every=3))
    _, counts = _scanned_frames(keyframes, detector, {0: [FACE_A, FACE_B]}, 3)
    assert counts == [2, 2, 2]
    detector.scene = np.float32([FACE_A])  # the scan sees A only; B's crop still "finds" it
    detector.detect_near = lambda image, boxes: detector._faces(boxes, 0.4)
    assert len(keyframes.detect(NO_IMAGE)) == 1


def test_max_faces_keeps_the_best_on_keyframes() -> None:
    detector = _ScriptedDetector()
    keyframes = KeyframeDetector(detector, DetectOptions(scan_every=3, max_faces=1))
    assert _scanned_frames(keyframes, detector, {0: [FACE_A, FACE_B]}, 4)[1] == [1, 1, 1, 1]


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
        scanned = detector.detect(frame.image).boxes_xywh
        for box, centre in zip(scanned, box_centres(scanned)):
            found.append(bool(points_in_boxes(centre, followed).any()))
            ious.append(box_iou(box, followed).max() if len(followed) else 0.0)
    assert len(found) >= 110 and np.mean(found) >= 0.97, (len(found), np.mean(found))
    assert np.median(ious) >= 0.8
