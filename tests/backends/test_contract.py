"""The same contract for every backend; a backend whose package is missing is skipped."""

from __future__ import annotations

import numpy as np
import pytest

from facecli import backends
from facecli.errors import BackendUnavailable
from facecli.media import read_image

from ..conftest import ASTRONAUT


def _create_or_skip(stage: str, name: str):
    try:
        return backends.create(stage, name)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("name", backends.names("detect"))
def test_detector_contract(name: str) -> None:
    detector = _create_or_skip("detect", name)
    image = read_image(ASTRONAUT)
    found = detector.detect(image)
    assert found.boxes_xywh.shape == (len(found), 4) and found.keypoints_6.shape == (len(found), 6, 2)
    assert found.scores.dtype == np.float32 and ((found.scores >= 0) & (found.scores <= 1)).all()
    empty = detector.detect(np.zeros((240, 320, 3), np.uint8))
    assert len(empty) == 0, "a black image has no face"
    assert isinstance(detector.settings(), dict)


@pytest.mark.parametrize("name", backends.names("landmarks"))
def test_landmark_model_contract(name: str) -> None:
    model = _create_or_skip("landmarks", name)
    session = model.open_session(video=False)
    points = session.fit(read_image(ASTRONAUT), np.array([130.0, 30.0, 200.0, 200.0]))
    assert points is not None and points.shape == (478, 3)
    assert (points[:, 0] > 100).all() and (points[:, 0] < 360).all(), "points fall inside the crop given"
    session.close()


def test_mediapipe_backend_finds_the_astronaut_face_in_the_right_crop() -> None:
    model = _create_or_skip("landmarks", "mediapipe")
    session = model.open_session(video=False)
    assert session.fit(read_image(ASTRONAUT), np.array([0.0, 300.0, 200.0, 200.0])) is None, "no face in the patch"


def test_unknown_backend_is_a_usage_error() -> None:
    from facecli.errors import UsageError

    with pytest.raises(UsageError, match="mediapipe"):
        backends.create("detect", "nope")


def test_describe_reports_every_backend() -> None:
    rows = backends.describe()
    assert {(r.stage, r.name) for r in rows} >= {("detect", "mediapipe"), ("landmarks", "mediapipe")}
    assert all(r.usable for r in rows if r.name == "mediapipe")


def test_reusable_backends_are_built_once_per_thread_and_settings() -> None:
    """The MediaPipe backends (weights in the wheel, no state between images) are handed out
    again, so a batch builds its graphs once; other settings or another thread get their own."""
    import threading

    first = backends.create("detect", "mediapipe", min_size=40.0)
    assert backends.create("detect", "mediapipe", min_size=40.0) is first
    assert backends.create("detect", "mediapipe", min_size=64.0) is not first
    assert backends.create("landmarks", "mediapipe") is backends.create("landmarks", "mediapipe")
    assert backends.create("detect", "fake") is not backends.create("detect", "fake")  # not reusable
    elsewhere = []
    thread = threading.Thread(target=lambda: elsewhere.append(backends.create("detect", "mediapipe", min_size=40.0)))
    thread.start()
    thread.join()
    assert elsewhere[0] is not first
