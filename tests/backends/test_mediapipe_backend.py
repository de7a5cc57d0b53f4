from __future__ import annotations

import numpy as np
import pytest

from facecli.backends.mediapipe_backend import BlazeFaceDetector, square_crop, tile_levels, tile_origins
from facecli.media import read_image

from ..conftest import ASTRONAUT


def test_tiles_hold_every_face_up_to_their_overlap_whole() -> None:
    for length, side, overlap in [(720, 286, 143), (528, 285, 121), (1280, 285, 60), (1000, 300, 150), (200, 286, 143)]:
        starts = tile_origins(length, side, overlap)
        assert starts[0] == 0 and starts[-1] + side >= length
        for face in (overlap // 2, overlap):
            for left in range(0, length - face + 1):
                assert any(s <= left and left + face <= s + side for s in starts), (length, side, face, left)


def test_pyramid_reaches_the_smallest_face_without_gaps() -> None:
    assert tile_levels(512, 100) == []  # the whole-frame pass already sees 100 px faces
    levels = tile_levels(3840, 40)
    assert levels[-1][0] * 0.14 <= 40 + 1e-6
    sides = [3840, *(side for side, _ in levels)]
    for big, (small, overlap) in zip(sides, levels):
        assert 0.5 * small >= 0.14 * big - 1e-6, "a face the level above may miss is at most half a tile"
        assert 0.14 * big <= overlap <= small / 2 + 0.5, "such a face is whole in some tile"


def test_tiles_overlap_only_as_much_as_their_level_needs() -> None:
    # At 720x528, whole-frame full range sees faces from 0.14 * 720 = 101 px: the one level of
    # 285 px tiles (down to 40 px faces) needs 121 px of overlap, not half a tile.
    assert tile_levels(720, 40) == [(285, 121)]
    assert len(tile_origins(720, 285, 121)) * len(tile_origins(528, 285, 121)) == 12  # 15 at half overlap


def test_landmark_array_reads_the_wire_bytes_as_protobuf_does() -> None:
    from mediapipe.framework.formats import landmark_pb2

    from facecli.backends.mediapipe_backend import landmark_array

    rng = np.random.default_rng(0)
    points = rng.normal(size=(478, 3)).astype(np.float32)
    plain = landmark_pb2.NormalizedLandmarkList(
        landmark=[landmark_pb2.NormalizedLandmark(x=x, y=y, z=z) for x, y, z in points])
    np.testing.assert_array_equal(landmark_array(plain), points.astype(np.float64))
    # Another layout (a field more, one missing) takes the attribute path and still reads right.
    plain.landmark[3].visibility = 0.5
    plain.landmark[7].ClearField("z")
    expected = points.astype(np.float64)
    expected[7, 2] = 0.0
    np.testing.assert_array_equal(landmark_array(plain), expected)


@pytest.mark.parametrize("video", [False, True], ids=["image", "video"])
def test_a_closed_sessions_graph_serves_the_next_one_unchanged(video: bool) -> None:
    """A closed session hands its graph back to the model, reset: the next session reuses it
    and fits exactly as a session with a new graph does."""
    from facecli.backends.mediapipe_backend import FaceMeshModel

    image, roi = read_image(ASTRONAUT), np.array([130.0, 30.0, 200.0, 200.0])
    model = FaceMeshModel()
    first = model.open_session(video)
    graph = first._mesh
    moved = first.fit(image, roi + [6.0, -4.0, 0.0, 0.0])  # a track the next session must not inherit
    first.close()
    first.close()  # twice: the graph is still handed back once
    again = model.open_session(video)
    assert again._mesh is graph and len(model._idle[video]) == 0
    fresh = FaceMeshModel().open_session(video).fit(image, roi)
    assert np.array_equal(again.fit(image, roi), fresh) and not np.array_equal(moved, fresh)


def test_square_crop_is_black_outside_the_image_and_averages_when_shrinking() -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, ::2] = 255  # one-pixel stripes: point sampling would give all white or all black
    crop = square_crop(image, -20, 0, 40, 20)  # the left half of the square lies off the image
    assert crop.shape == (20, 20, 3)
    assert (crop[:, :9] == 0).all()
    assert np.abs(crop[:, 11:].astype(int) - 128).max() <= 1


def test_detect_near_finds_the_astronaut_again_from_a_shifted_box() -> None:
    image = read_image(ASTRONAUT)
    detector = BlazeFaceDetector()
    face = detector.detect(image).boxes_xywh[0]
    again = detector.detect_near(image, (face + [12, -8, 0, 0])[None])
    assert len(again) == 1
    assert np.abs(again.boxes_xywh[0, :2] - face[:2]).max() < 0.15 * face[2]
    assert len(detector.detect_near(np.zeros_like(image), face[None])) == 0
