from __future__ import annotations

import numpy as np
import pytest

import facecli
from facecli.geometry import box_iou
from facecli.stages.detect import DetectOptions

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
        facecli.detect(ASTRONAUT, backend="nope")
