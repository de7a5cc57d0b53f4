"""``--chunk-seconds``: one long video cut into parts processed in parallel, merged into one file.

Parts begin at shot cuts. At a cut, detect and landmarks forget every track (the tracker, the
landmark trackers and their detection schedule), so a part run alone from its cut gives the rows
the whole file gives there, but for numbering: face ids and shots restart at 0, and the merge
adds each part's offsets.

1. scan: stretches of ``seconds``, in parallel, for the frames where a shot cuts (a cut depends
   only on a frame and the one before, so a stretch decodes one frame before its start).
2. parts: from the first cut at or after each stretch's start to the next such cut; a shot
   longer than a stretch stays whole in one part.
3. run: each part by the stage's own job function, on frames decoded from its cut on
   (:func:`facecli.media.only_frames`), into a hidden part file beside the output.
4. merge: ids and shots renumbered, then detect's ``--min-track`` applied, into one file
   written as the stage writes its own.

What differs from a single-process run (docs/scaling.md): landmark points of the faces whose
track starts in a part after the first. The landmarks stage reuses MediaPipe mesh sessions from
one track to the next without clearing them, so a new track's first fit starts from wherever
the session's last face was; a part starts with fresh sessions. Rows, frame numbers, face ids
and shots come out the same.
"""

from __future__ import annotations

import bisect
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from . import formats, media
from .batch import Job
from .errors import InputError, NoFaceFound, UsageError
from .results import FaceTable
from .stages.common import FileStats, ProgressCallback, no_face
from .stages.landmarks import resolve_source
from .tracking import ShotCutDetector

Item = TypeVar("Item")
Result = TypeVar("Result")


class Mapper(Protocol):
    """Runs ``fn(item, progress)`` for every item, in parallel somewhere; results in item order.
    An item's error is raised as it was raised (a FacecliError keeps its message)."""

    def map(self, fn: Callable[[Item, ProgressCallback | None], Result], items: list[Item]) -> list[Result]: ...


@dataclass(frozen=True)
class _StageChunking:
    """What chunking needs to know of a stage."""

    media_of: Callable[[Path], Path]  # the video a job's source stands for
    part_options: Callable[[Any], Any]  # the options each part runs with
    refused: Callable[[Any], str | None]  # why these options cannot be chunked, if they cannot
    cut_step: Callable[[Path], int]  # parts may start only at cuts on multiples of this
    confirm: Callable[[Any], bool]  # whether the merge applies detect's --min-track


def _faces_file_every(source: Path) -> int:
    # Landmarks from a faces file made with --every N scan only on its detected frames: a part
    # must start on one, as the whole file's scan schedule does at that cut.
    faces_file = resolve_source(source)[1]
    return int(formats.read_header(faces_file)["settings"].get("every", 1)) if faces_file else 1


_STAGES = {
    # A part keeps every track (--min-track 1) so the merge sees every id the tracker gave out,
    # then drops the short tracks as the whole file's run does.
    "faces": _StageChunking(
        media_of=Path, part_options=lambda options: replace(options, min_track=1),
        refused=lambda options: "--embed and --merge-tracks" if options.embeds else None,
        cut_step=lambda source: 1, confirm=lambda options: options.min_track > 1,
    ),
    "landmarks": _StageChunking(
        media_of=lambda source: resolve_source(source)[0], part_options=lambda options: options,
        refused=lambda options: None, cut_step=_faces_file_every, confirm=lambda options: False,
    ),
}


def check_chunkable(job: Job, seconds: float) -> None:
    """UsageError unless ``job`` can be split with ``--chunk-seconds seconds``."""
    spec = _STAGES.get(formats.stage_of(job.output) or "")
    if spec is None:
        raise UsageError("--chunk-seconds works for detect and landmarks only")
    if job.preview is not None:
        raise UsageError("--chunk-seconds cannot draw a --preview; drop one of them")
    refused = spec.refused(job.options)
    if refused:
        raise UsageError(f"--chunk-seconds cannot be used with {refused}")
    if seconds <= 0:
        raise UsageError("--chunk-seconds must be > 0")


def chunked(job: Job, seconds: float, mapper: Mapper) -> Job:
    """``job`` with a run that splits a long video into parts through ``mapper`` (module doc)."""
    check_chunkable(job, seconds)
    return replace(job, run=Chunked(job.run, formats.stage_of(job.output) or "", seconds, mapper))


@dataclass(frozen=True)
class _Part:
    media: Path
    start: int
    stop: int | None  # None: to the end of the video
    output: Path


@dataclass(frozen=True)
class Chunked:
    """A stage's job function that runs a long video as parts through ``mapper`` (module doc).

    A video shorter than two stretches, one shot too long to split, or one that cannot be cut
    exactly (frames not evenly spaced, a seek that cannot land) runs whole, as without chunking.
    """

    run: Callable[..., FileStats]
    stage: str
    seconds: float
    mapper: Mapper

    def __call__(self, source: Path, output: Path, options: Any, preview: Path | None = None,
                 progress: ProgressCallback | None = None) -> FileStats:
        spec = _STAGES[self.stage]
        video = spec.media_of(source)
        info = media.probe(video)
        stretch = max(1, round(self.seconds * info.fps))
        if info.kind != "video" or info.frame_count < 2 * stretch:
            return self.run(source, output, options, preview, progress)
        try:
            cuts = self._cuts(video, stretch, info.frame_count)
        except InputError:  # the whole file's run tells what is wrong, or copes
            return self.run(source, output, options, preview, progress)
        starts = _part_starts(cuts, stretch, spec.cut_step(source))
        if len(starts) < 2:
            return self.run(source, output, options, preview, progress)
        folder = Path(tempfile.mkdtemp(prefix=f".{output.name}.parts-", dir=output.parent))  # hidden, as .part files
        try:
            parts = [_Part(video, start, stop, folder / f"part{k:05d}.{self.stage}.parquet")
                     for k, (start, stop) in enumerate(zip(starts, [*starts[1:], None]))]
            # Longest first: the last part to start is then a short one, and all end close together.
            longest_first = sorted(parts, key=lambda p: p.start - (p.stop or info.frame_count))
            try:
                done = self.mapper.map(_PartWork(self.run, source, spec.part_options(options)), longest_first)
            except InputError:  # not "no face" (a part without one is empty): a seek or damage,
                return self.run(source, output, options, preview, progress)  # which the whole run reports
            stats = dict(zip(longest_first, done))
            return _merge(parts, [stats[p] for p in parts], cuts, source, output, self.stage, options,
                          spec.confirm(options))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _cuts(self, video: Path, stretch: int, frame_count: int) -> list[int]:
        count = max(2, round(frame_count / stretch))
        bounds = [(k * stretch, (k + 1) * stretch if k < count - 1 else None) for k in range(count)]
        return sorted(cut for found in self.mapper.map(_ScanWork(video), bounds) for cut in found)


@dataclass(frozen=True)
class _ScanWork:
    video: Path

    def __call__(self, bounds: tuple[int, int | None], progress: ProgressCallback | None = None) -> list[int]:
        """The frames among ``start``..``stop - 1`` at which a shot starts (frame 0 always does)."""
        start, stop = bounds
        detector, found = ShotCutDetector(), []
        with media.only_frames(self.video, max(start - 1, 0), stop):
            for frame in media.iter_frames(self.video):
                # The frame before ``start`` only primes the detector: its "cut" is that it came first.
                if detector.update_frame(frame) and frame.index >= start:
                    found.append(frame.index)
        return found


def _part_starts(cuts: list[int], stretch: int, step: int) -> list[int]:
    """Frame 0 and, for each later stretch, the first cut (on a multiple of ``step``) from its start."""
    usable = [cut for cut in cuts if cut % step == 0]
    starts = {0}
    for boundary in range(stretch, (cuts[-1] if cuts else 0) + 1, stretch):
        at = bisect.bisect_left(usable, boundary)
        if at < len(usable):
            starts.add(usable[at])
    return sorted(starts)


@dataclass(frozen=True)
class _PartWork:
    run: Callable[..., FileStats]
    source: Path
    options: Any

    def __call__(self, part: _Part, progress: ProgressCallback | None = None) -> FileStats:
        """One part through the stage's job function; a part without faces is an empty part."""
        frames = _FrameCount(progress)
        with media.only_frames(part.media, part.start, part.stop):
            try:
                return self.run(self.source, part.output, self.options, None, frames)
            except NoFaceFound:
                return FileStats(frames=frames.count)


class _FrameCount:
    """A progress callback that also counts: a part that finds no face still says how many frames it did."""

    def __init__(self, progress: ProgressCallback | None):
        self.progress, self.count = progress, 0

    def __call__(self, frames: int) -> None:
        self.count += frames
        if self.progress:
            self.progress(frames)


def _merge(parts: list[_Part], stats: list[FileStats], cuts: list[int], source: Path, output: Path,
           stage: str, options: Any, confirm: bool) -> FileStats:
    """The parts' rows as one file: ids and shots numbered as in the whole video."""
    frames = sum(s.frames for s in stats)
    written = [part for part, s in zip(parts, stats) if s.faces]
    if not written:
        raise no_face(frames, source)
    header = formats.read_header(written[0].output)
    # The parts ran with their own options (detect's --min-track 1): record the job's.
    header["settings"] = {**header["settings"], **json.loads(json.dumps(asdict(options)))}
    min_track = options.min_track if confirm and frames >= options.min_track else 1
    writer = formats.TableWriter(output, stage, header)
    ids: set[int] = set()
    try:
        id_offset = 0
        for part, part_stats in zip(parts, stats):
            if not part_stats.faces:  # it wrote no file
                continue
            shot_offset = bisect.bisect_left(cuts, part.start)  # the part's shot 0 is the whole file's
            batches = _confirmed(part.output, min_track, options.every) if min_track > 1 else \
                formats.iter_batches(part.output)
            for rows in batches:
                rows = replace(rows, face_id=rows.face_id + id_offset, shot=rows.shot + shot_offset)
                ids.update(rows.face_id.tolist())
                writer.write(rows)
            # A part's tracker gave out ids 0..faces-1, and each appears in its rows (detect's
            # parts keep every track), so the next part's ids follow on.
            id_offset += part_stats.faces
        if not ids:
            raise no_face(frames, source)
        writer.close(frames_processed=frames, face_ids=len(ids))
    except BaseException as exc:
        writer.abort(exc)
        raise
    return FileStats(frames=frames, rows=writer.rows, faces=len(ids))


def _confirmed(part_file: Path, min_track: int, every: int) -> Iterator[FaceTable]:
    """The part's rows that the whole file's run keeps with ``--min-track``.

    That run holds each processed frame back until ``min_track - 1`` more are processed and then
    keeps the rows of tracks seen at least ``min_track`` times so far. Tracks never cross a part
    (it starts at a cut), so per track: the rows from ``min_track - 1`` processed frames before
    its ``min_track``-th row on.
    """
    seen: dict[int, list[int]] = {}
    for rows in formats.iter_batches(part_file):
        for face_id, frame in zip(rows.face_id.tolist(), rows.frame_index.tolist()):
            seen.setdefault(face_id, []).append(frame // every)
    first_kept = {face_id: positions[min_track - 1] - (min_track - 1)
                  for face_id, positions in seen.items() if len(positions) >= min_track}
    for rows in formats.iter_batches(part_file):
        keep = np.array([f // every >= first_kept.get(i, np.inf)
                         for i, f in zip(rows.face_id.tolist(), rows.frame_index.tolist())], bool)
        yield rows[keep]
