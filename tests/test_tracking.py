from __future__ import annotations

import numpy as np

from facecli.media import iter_frames
from facecli.tracking import FaceTracker, ShotCutDetector

from .conftest import MEGAMIND, MEGAMIND_CUTS


def test_shot_cuts_of_megamind() -> None:
    detector = ShotCutDetector()
    cuts = [frame.index for frame in iter_frames(MEGAMIND) if detector.update(frame.image)]
    assert cuts == [0, *MEGAMIND_CUTS]  # frame 0 starts the (black) first shot


def test_ids_persist_and_survive_brief_misses() -> None:
    tracker = FaceTracker(max_missed=3)
    a, b = [10, 10, 50, 50], [200, 10, 50, 50]
    assert tracker.update([a, b]).tolist() == [0, 1]
    assert tracker.update([[b[0] + 4, 12, 50, 50], [a[0] + 3, 11, 50, 50]]).tolist() == [1, 0]
    assert tracker.update([a]).tolist() == [0]  # b missed once...
    assert tracker.update([a, b]).tolist() == [0, 1]  # ...and keeps its id


def test_ids_are_never_reused_after_a_long_miss_or_a_cut() -> None:
    tracker = FaceTracker(max_missed=2)
    box = [10, 10, 50, 50]
    assert tracker.update([box]).tolist() == [0]
    for _ in range(3):
        tracker.update(np.zeros((0, 4)))
    assert tracker.update([box]).tolist() == [1]
    tracker.new_shot()
    assert tracker.update([box]).tolist() == [2]


def test_lost_recently_flags_a_missing_face() -> None:
    tracker = FaceTracker(max_missed=2)
    tracker.update([[0, 0, 10, 10]])
    assert not tracker.lost_recently
    tracker.update(np.zeros((0, 4)))
    assert tracker.lost_recently


def test_blank_frames_are_flagged() -> None:
    from facecli.media import read_image

    from .conftest import ASTRONAUT

    detector = ShotCutDetector()
    detector.update(np.zeros((240, 320, 3), np.uint8))
    assert detector.blank
    detector.update(np.full((240, 320, 3), 40, np.uint8) + np.random.default_rng(0).integers(0, 3, (240, 320, 3), np.uint8))
    assert detector.blank, "a flat dark frame with sensor noise is blank too"
    detector.update(read_image(ASTRONAUT))
    assert not detector.blank


def test_blank_flag_can_be_off_for_still_images() -> None:
    detector = ShotCutDetector(flag_blank=False)
    detector.update(np.zeros((240, 320, 3), np.uint8))
    assert not detector.blank
