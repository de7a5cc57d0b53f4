"""Face tracks of a video for the stages that follow one face through it (reenact, stabilize).

The landmarks are computed once into a landmarks file (or a given landmarks file is used as
is), then streamed back track by track, so memory does not grow with the video.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .. import formats, media
from ..errors import InputError, NoFaceFound
from ..results import Landmarks
from .detect import DetectOptions
from .landmarks import LandmarkOptions, landmarks_file


def landmarks_source(path: Path, folder: Path, what: str, smooth: bool = True) -> Path:
    """A landmarks file for the ``what`` video ``path``: itself if it is one, else made into
    ``folder`` (smoothed by default: jitter would show in what is rendered from it)."""
    if formats.stage_of(path) == "landmarks":
        formats.read_header(path)  # complete and readable, or a one-line error
        return path
    if media.probe(path).kind != "video":
        raise InputError(f"the {what} must be a video (or a landmarks file of one)", path)
    out = folder / f"{path.stem}.landmarks.parquet"
    try:
        landmarks_file(path, out, LandmarkOptions(smooth=smooth, detect=DetectOptions()))
    except NoFaceFound as exc:
        raise NoFaceFound(f"no face found in the {what}; use one with a visible face", path) from exc
    return out


def track_rows(path: Path, face_id: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(frame index, landmarks_478 px, rotation_rad) of one track, in frame order, streamed."""
    for batch in formats.iter_batches(path):
        for row in np.flatnonzero(batch.face_id == face_id):
            yield int(batch.frame_index[row]), batch.landmarks_478[row].astype(np.float64), batch.rotation_rad[row]


def frames_with_rows(landmarks_path: Path, media_path: Path,
                     info: media.MediaInfo | None = None) -> Iterator[tuple[media.Frame, Landmarks]]:
    """Each decoded frame of the media and its rows of the landmarks file, streamed side by side.

    A frame's rows may straddle two of the file's chunks: rows wait until the file has moved past
    the frame, and at most about one chunk is held.
    """
    batches = formats.iter_batches(landmarks_path)
    pending, more = Landmarks.empty(), True
    for frame in media.iter_frames(media_path, info or media.probe(media_path)):
        while more and (not len(pending) or pending.frame_index[-1] <= frame.index):
            chunk = next(batches, None)
            more = chunk is not None
            pending = Landmarks.concat([pending, chunk]) if more else pending
        yield frame, pending[pending.frame_index == frame.index]
        pending = pending[pending.frame_index > frame.index]
