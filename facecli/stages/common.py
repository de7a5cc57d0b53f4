"""What every stage does around its own work: probe, stream rows to a file, draw a preview."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import media
from ..errors import NoFaceFound
from ..formats import TableWriter, make_header
from ..results import FaceTable

# Rows are flushed to disk in chunks of this many frames, or sooner at this many rows (items
# read from a stage file are whole batches of rows): memory stays bounded.
CHUNK_FRAMES, CHUNK_ROWS = 1024, 1024

ProgressCallback = Callable[[int], None]


@dataclass
class FileStats:
    """What one file's run produced, for the batch summary."""

    frames: int = 0
    rows: int = 0
    faces: int = 0  # distinct face ids
    summary: dict[str, Any] = field(default_factory=dict)  # a stage's per-file findings, for the report


class PreviewSink:
    """Collects drawn frames: a PNG for an image, an MP4 (with the source's audio) for a video.

    ``frame_step``: one frame drawn per this many source frames (detect's ``--every``). Frames
    are placed by their source times (``media.VideoWriter``), so the preview keeps real time and
    its audio stays in sync, at a variable frame rate too. Nothing appears until :meth:`close`.
    """

    def __init__(self, path: Path, info: media.MediaInfo, frame_step: int = 1):
        self.path, self.info, self.frame_step = Path(path), info, frame_step
        self._writer: media.VideoWriter | None = None
        self._still: np.ndarray | None = None

    def add(self, drawn_rgb: np.ndarray, timestamp_s: float) -> None:
        """One drawn frame, shown from ``timestamp_s`` (its source frame's time)."""
        if self.info.kind == "image":
            self._still = drawn_rgb
            return
        if self._writer is None:
            h, w = drawn_rgb.shape[:2]
            audio = self.info.path if self.info.has_audio else None
            fps = (media.output_fps(self.info) or 25.0) / self.frame_step
            self._writer = media.VideoWriter(self.path, w, h, fps, audio_from=audio)
        self._writer.write(drawn_rgb, timestamp_s)

    def close(self, error: BaseException | None = None) -> None:
        if error is None and self._still is not None:
            media.write_image(self.path, self._still)
        if self._writer is not None:
            self._writer.__exit__(type(error) if error else None, error, None)


def no_face(frames: int, source: Path) -> NoFaceFound:
    """The error of a file in whose frames no face was found."""
    return NoFaceFound(f"no face found in {frames} frame(s); check the file, or lower --min-score / --min-size",
                       source)


def run_to_file(
    rows: Iterator[tuple[media.Frame, FaceTable]],
    *,
    stage_format: str,
    source: Path,
    info: media.MediaInfo,
    output: Path,
    backend: str,
    settings: dict[str, Any],
    preview: Path | None,
    draw: Callable[[np.ndarray, Any], np.ndarray],
    progress: ProgressCallback | None = None,
    input_path: Path | None = None,
    frame_step: int = 1,
) -> FileStats:
    """Stream a stage's (frame, rows) pairs into ``output`` (and ``preview``), atomically."""
    sink = PreviewSink(preview, info, frame_step) if preview else None
    writer = TableWriter(output, stage_format, make_header(stage_format, backend, settings, source, info, input_path))
    try:
        stats = stream_table(rows, writer, sink, draw, progress)
        if not stats.faces:
            raise no_face(stats.frames, source)
        if sink:  # the preview first: a complete table must not stand without its preview
            sink.close()
            sink = None
        writer.close(frames_processed=stats.frames, face_ids=stats.faces)
    except BaseException as exc:
        writer.abort(exc)
        if sink:
            sink.close(exc)
        raise
    return stats


def stream_table(pairs: Iterator[tuple[media.Frame | None, FaceTable]], writer: TableWriter,
                 sink: PreviewSink | None, draw: Callable[[np.ndarray, Any], np.ndarray] | None,
                 progress: ProgressCallback | None = None) -> FileStats:
    """Rows into ``writer`` in chunks of CHUNK_FRAMES items or CHUNK_ROWS rows, whichever
    comes first (memory stays bounded), each decoded frame drawn into ``sink``. Closes
    nothing: the caller finishes or aborts both. Returns the frames decoded (a pair without a
    frame carries rows only), rows and face ids."""
    stats, ids, pending, pending_rows = FileStats(), set(), [], 0
    for frame, rows in pairs:
        pending.append(rows)
        pending_rows += len(rows)
        ids.update(rows.face_id.tolist())
        if frame is not None:
            stats.frames += 1
            if sink:
                sink.add(draw(frame.image, rows), frame.timestamp_s)
            if progress:
                progress(1)
        if len(pending) >= CHUNK_FRAMES or pending_rows >= CHUNK_ROWS:
            writer.write(type(rows).concat(pending))
            pending, pending_rows = [], 0
    if pending:
        writer.write(type(pending[0]).concat(pending))
    stats.rows, stats.faces = writer.rows, len(ids)
    return stats


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


@contextmanager
def all_or_nothing(*paths: Path) -> Iterator[None]:
    """The outputs of one job: if it fails, those it already put in place are removed (each is
    written atomically, but a video without its motion file must not look complete either)."""
    before = {p: _mtime_ns(p) for p in paths}
    try:
        yield
    except BaseException:
        for path in paths:
            if _mtime_ns(path) not in (None, before[path]):
                path.unlink(missing_ok=True)
        raise
