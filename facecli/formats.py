"""The standardized stage files, serialized in one place.

Each stage writes ``<stem>.<stage>.parquet`` (or ``.csv``): one row per (frame, face), with
OpenFace 2.0 FeatureExtraction column names wherever a counterpart exists. A JSON header
(format, versions, backend and settings, source media and its hash) sits in the Parquet
metadata under the key ``facecli``, or for CSV in a ``<file>.json`` sidecar written last.
Rows are streamed in chunks, so memory does not grow with video length. See docs/formats.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from . import __version__
from .atomic import atomic_output
from .errors import InputError
from .results import (ARKIT_NAMES, AUS, EMBEDDING_DIM, EXPRESSIONS, FACE_CONTROLS, INTENSITY_AUS, Classification, Faces,
                      FaceTable, Landmarks, Motion, Reconstruction, Stabilization)

FORMAT_VERSION = 1
HEADER_KEY = b"facecli"
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear")


def _identity(values: np.ndarray) -> np.ndarray:
    return values


def _axis_major(values: np.ndarray) -> np.ndarray:
    """(N, K, D) -> (N, D*K): all x, then all y (then all z), as OpenFace lays out its points."""
    return values.transpose(0, 2, 1).reshape(len(values), values.shape[1] * values.shape[2])


def _point_names(prefixes: str, count: int) -> tuple[str, ...]:
    return tuple(f"{p}_{i}" for p in prefixes.split() for i in range(count))


@dataclass(frozen=True)
class Columns:
    """How one result field (or derived property) becomes flat file columns."""

    field: str
    names: tuple[str, ...]
    csv_format: str
    to_file: Callable[[np.ndarray], np.ndarray] = _identity
    from_file: Callable[[np.ndarray], np.ndarray] | None = _identity  # None: derived, not read back
    list_column: str | None = None  # Parquet keeps the group as one fixed-size list column
    in_csv: bool = True  # False: Parquet only (too wide for a CSV); read back from CSV as NaN
    optional: bool = False  # written only when the result has it (results.FaceTable.OPTIONAL)


def _common(confidence_field: str | None) -> list[Columns]:
    confidence = [Columns(confidence_field, ("confidence",), "%.2f")] if confidence_field else []
    return [
        Columns("frame_index", ("frame",), "%d", lambda v: v + 1, lambda v: v - 1),
        Columns("face_id", ("face_id",), "%d"),
        Columns("timestamp_s", ("timestamp",), "%.3f"),
        *confidence,
    ]


FACES_COLUMNS = [
    *_common("score"),
    Columns("shot", ("shot",), "%d"),
    Columns("box_xywh", ("x", "y", "w", "h"), "%.1f"),
    Columns("keypoints_6", tuple(f"{k}_{a}" for k in KEYPOINT_NAMES for a in "xy"), "%.1f",
            lambda v: v.reshape(len(v), 12), lambda v: v.reshape(len(v), 6, 2)),
    Columns("embedding", _point_names("embedding", EMBEDDING_DIM), "%.5f", list_column="embedding", optional=True),
]

LANDMARKS_COLUMNS = [
    *_common("confidence"),
    Columns("frame_index", ("success",), "%d", lambda v: np.ones(len(v), np.int8), None),
    Columns("shot", ("shot",), "%d"),
    Columns("translation_mm", ("pose_Tx", "pose_Ty", "pose_Tz"), "%.1f"),
    Columns("rotation_rad", ("pose_Rx", "pose_Ry", "pose_Rz"), "%.3f"),
    Columns("head_pose_deg", ("yaw", "pitch", "roll"), "%.2f", from_file=None),
    Columns("box_xywh", ("face_x", "face_y", "face_w", "face_h"), "%.1f"),
    Columns("landmarks_68", _point_names("x y", 68), "%.1f", _axis_major, None),
    Columns("landmarks_68_mm", _point_names("X Y Z", 68), "%.1f", _axis_major,
            lambda v: v.reshape(len(v), 3, 68).transpose(0, 2, 1)),
    Columns("landmarks_478", _point_names("mesh_x mesh_y mesh_z", 478), "%.2f",
            _axis_major, lambda v: v.reshape(len(v), 3, 478).transpose(0, 2, 1), list_column="landmarks_478"),
]


MOTION_COLUMNS = [
    *_common(None),
    Columns("shot", ("shot",), "%d"),
    Columns("face_controls", FACE_CONTROLS, "%.3f"),
    Columns("head_pose_deg", ("yaw", "pitch", "roll"), "%.2f"),
    Columns("gaze_deg", ("gaze_yaw", "gaze_pitch"), "%.2f"),
    Columns("phone", ("phone",), "%s"),
]


# The 68 points as a stored field (reconstruct, classify), read back unlike landmarks' derived ones.
STORED_68 = Columns("landmarks_68", _point_names("x y", 68), "%.1f", _axis_major,
                    lambda v: v.reshape(len(v), 2, 68).transpose(0, 2, 1))

RECONSTRUCT_COLUMNS = [
    *LANDMARKS_COLUMNS[:8],  # frame, face_id, timestamp, confidence, success, shot, pose_T*, pose_R*
    STORED_68,
    Columns("blendshapes", ARKIT_NAMES, "%.3f"),
    Columns("vertices_cm", (), "", list_column="vertices_cm", in_csv=False),
]


CLASSIFY_COLUMNS = [
    *LANDMARKS_COLUMNS[:6],  # frame, face_id, timestamp, confidence, success, shot
    Columns("gaze_angle_rad", ("gaze_angle_x", "gaze_angle_y"), "%.3f"),
    *LANDMARKS_COLUMNS[6:8],  # pose_T*, pose_R*
    STORED_68,
    Columns("au_intensity", tuple(f"AU{au:02d}_r" for au in INTENSITY_AUS), "%.2f"),
    Columns("au_presence", tuple(f"AU{au:02d}_c" for au in AUS), "%d"),
    Columns("expressions", tuple(f"emotion_{name}" for name in EXPRESSIONS), "%.3f"),
    Columns("valence_arousal", ("valence", "arousal"), "%.3f"),
    Columns("explanation", ("explanation",), "%s"),
]


STABILIZE_COLUMNS = [
    *_common(None),
    Columns("shot", ("shot",), "%d"),
    Columns("status", ("status",), "%d"),
    Columns("transform_2x3", tuple(f"m{r}{c}" for r in range(2) for c in range(3)), "%.6f",
            lambda v: v.reshape(len(v), 6), lambda v: v.reshape(len(v), 2, 3)),
    Columns("inverse_2x3", tuple(f"inv_m{r}{c}" for r in range(2) for c in range(3)), "%.6f",
            lambda v: v.reshape(len(v), 6), lambda v: v.reshape(len(v), 2, 3)),
]


@dataclass(frozen=True)
class StageFormat:
    name: str  # "faces", "landmarks": the middle part of the file name
    result_type: type[FaceTable]
    columns: list[Columns]


FORMATS = {
    "faces": StageFormat("faces", Faces, FACES_COLUMNS),
    "landmarks": StageFormat("landmarks", Landmarks, LANDMARKS_COLUMNS),
    "motion": StageFormat("motion", Motion, MOTION_COLUMNS),
    "stabilize": StageFormat("stabilize", Stabilization, STABILIZE_COLUMNS),
    "reconstruct": StageFormat("reconstruct", Reconstruction, RECONSTRUCT_COLUMNS),
    "classify": StageFormat("classify", Classification, CLASSIFY_COLUMNS),
}


def output_path(input_path: Path, out_dir: Path | None, stage_format: str, file_format: str) -> Path:
    """``<out_dir or input folder>/<stem>.<stage>.<parquet|csv>``; a stage file's stem drops its stage part."""
    stem = input_path.name
    for fmt in FORMATS:
        for ext in ("parquet", "csv"):
            stem = stem.removesuffix(f".{fmt}.{ext}")
    stem = Path(stem).stem if stem == input_path.name else stem
    return (out_dir or input_path.parent) / f"{stem}.{stage_format}.{file_format}"


def quick_hash(path: Path, block: int = 1 << 20) -> str:
    """sha256 of the size, the first and the last MiB: identifies a media file cheaply (resuming
    a batch of 10,000 videos reads 20 GB, not all of them)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(block))
        if size > block:
            fh.seek(max(block, size - block))
            digest.update(fh.read(block))
    return digest.hexdigest()


def make_header(stage_format: str, backend: str, settings: dict[str, Any], source: Path, media: Any,
                input_path: Path | None = None, extra_inputs: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The provenance header every stage file carries.

    ``source`` is the media; ``input_path`` what the stage read, when that was an earlier
    stage's file (resume compares its hash, so a redone faces file redoes its landmarks).
    """
    input_path = input_path or source
    extra = [{"path": str(p.resolve()), "sha256_quick": quick_hash(p)} for p in extra_inputs]
    return {
        "extra_inputs": extra,  # other files read (speech, a driving video): resume redoes when they change
        "format": f"facecli.{stage_format}",
        "format_version": FORMAT_VERSION,
        "facecli_version": __version__,
        "backend": backend,
        "settings": settings,
        "input": {"path": str(input_path.resolve()), "sha256_quick": quick_hash(input_path)},
        "source": {
            "path": str(source.resolve()),
            "size_bytes": source.stat().st_size,
            "sha256_quick": quick_hash(source),
            "kind": media.kind,
            "width": media.width,
            "height": media.height,
            "fps": media.fps,
            "frame_count": media.frame_count,
            "duration_s": media.duration_s,
        },
    }


def _present(fmt: StageFormat, rows: FaceTable) -> list[Columns]:
    """The column groups a file of these rows has: optional ones only when the rows hold them."""
    return [g for g in fmt.columns if not g.optional or getattr(rows, g.field) is not None]


def _file_values(group: Columns, rows: FaceTable) -> np.ndarray:
    """(N, len(group.names)): one result field as the file's flat columns."""
    return np.asarray(group.to_file(np.asarray(getattr(rows, group.field)))).reshape(len(rows), len(group.names))


def _arrow_table(fmt: StageFormat, rows: FaceTable) -> pa.Table:
    arrays, names = [], []
    for group in _present(fmt, rows):
        source = getattr(rows, group.field)
        if group.list_column:
            flat = np.ascontiguousarray(source, np.float32).reshape(-1)
            width = int(np.prod(source.shape[1:]))
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(flat), width))
            names.append(group.list_column)
            continue
        for name, column in zip(group.names, _file_values(group, rows).T):
            arrays.append(pa.array(column))
            names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


# Column statistics only where readers filter: the writer keeps every row group's statistics
# until it closes, which for ~360 columns made memory grow with video length.
INDEXED_COLUMNS = ["frame", "face_id", "timestamp", "shot"]


def _parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    return pq.ParquetWriter(path, schema, compression="zstd", write_statistics=INDEXED_COLUMNS)


class TableWriter:
    """Streams result chunks into a stage file; the file appears only when :meth:`close` succeeds."""

    def __init__(self, path: Path, stage_format: str, header: dict[str, Any]):
        self.path, self.fmt, self.header = Path(path), FORMATS[stage_format], header
        self.file_format = self.path.suffix.lstrip(".")
        self.rows = 0
        self._atomic = atomic_output(self.path)
        self._tmp = self._atomic.__enter__()
        self._parquet: pq.ParquetWriter | None = None
        self._csv: Any = None
        self._csv_handle: Any = None

    def write(self, rows: FaceTable) -> None:
        if self.file_format == "csv":
            self._write_csv(rows)
        else:
            table = _arrow_table(self.fmt, rows)
            if self._parquet is None:
                self._parquet = _parquet_writer(self._tmp, table.schema)
            self._parquet.write_table(table)
        self.rows += len(rows)

    def _write_csv(self, rows: FaceTable) -> None:
        if self._csv is None:
            self._csv_handle = self._tmp.open("w", newline="")
            self._csv = csv.writer(self._csv_handle)
            self._csv.writerow([n for g in _present(self.fmt, rows) if g.in_csv for n in g.names])
        if not len(rows):
            return
        formatted = []
        for group in filter(lambda g: g.in_csv, _present(self.fmt, rows)):
            formatted.append(np.char.mod(group.csv_format, _file_values(group, rows)))
        self._csv.writerows(np.concatenate(formatted, axis=1).tolist())

    def close(self, **header_updates: Any) -> None:
        """Finish the file: write the header (with the final counts) and move it into place."""
        self.header.update(header_updates, rows=self.rows, complete=True)
        if self.file_format == "csv":
            if self._csv is None:
                self._write_csv(self.fmt.result_type.empty())
            self._csv_handle.close()
            self.header["csv_bytes"] = self._tmp.stat().st_size  # a CSV cut at a row end still parses
            self._atomic.__exit__(None, None, None)
            with atomic_output(sidecar_path(self.path)) as tmp:
                tmp.write_text(json.dumps(self.header, indent=2))
            return
        if self._parquet is None:
            self._parquet = _parquet_writer(self._tmp, _arrow_table(self.fmt, self.fmt.result_type.empty()).schema)
        self._parquet.add_key_value_metadata({HEADER_KEY: json.dumps(self.header).encode()})
        self._parquet.close()
        self._atomic.__exit__(None, None, None)

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop the partial file."""
        for handle in (self._csv_handle, self._parquet):
            if handle is not None:
                handle.close()
        exc = exc or RuntimeError("aborted")
        try:
            self._atomic.__exit__(type(exc), exc, None)
        except BaseException:  # noqa: BLE001 - atomic_output re-raises what we hand it
            pass

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            self.abort(exc)


def sidecar_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name + ".json")


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of a stage file; InputError if it is not a complete facecli file."""
    path = Path(path)
    try:
        if path.suffix == ".csv":
            header = json.loads(sidecar_path(path).read_text())
        else:
            meta = pq.read_metadata(path).metadata or {}
            header = json.loads(meta[HEADER_KEY])
    except (OSError, KeyError, ValueError, pa.ArrowException) as exc:
        raise InputError(f"not a complete facecli stage file ({type(exc).__name__}); re-run the stage that made it",
                         path) from exc
    if not isinstance(header, dict) or not header.get("complete"):
        raise InputError("stage file is incomplete; re-run the stage that made it", path)
    if path.suffix == ".csv" and header.get("csv_bytes", path.stat().st_size) != path.stat().st_size:
        raise InputError(f"cut short or changed since facecli wrote it ({path.stat().st_size} bytes, its "
                         f"{sidecar_path(path).name} says {header['csv_bytes']}); re-run the stage that made it", path)
    named, kind = stage_of(path), str(header.get("format", "")).removeprefix("facecli.")
    if kind not in FORMATS or not isinstance(header.get("source"), dict) or "path" not in header["source"] \
            or not isinstance(header.get("settings"), dict):
        raise InputError("not a facecli stage file this version reads; re-run the stage that made it", path)
    if named and named != kind:
        raise InputError(f"holds {kind} but is named as {named}; rename it to match", path)
    return header


def stage_of(path: Path) -> str | None:
    """'faces' or 'landmarks' when the name is a stage file's, else None."""
    for name in FORMATS:
        if path.name.endswith((f".{name}.parquet", f".{name}.csv")):
            return name
    return None


def _rows_from_arrow(fmt: StageFormat, table: pa.Table, header: dict[str, Any]) -> FaceTable:
    fields: dict[str, np.ndarray] = {}
    for group in fmt.columns:
        absent = group.optional and not {group.list_column, group.names[0]} & set(table.column_names)
        if group.from_file is None or absent:
            continue
        shape = (table.num_rows, *{**fmt.result_type.SHAPES, **fmt.result_type.OPTIONAL}[group.field][0])
        if group.list_column and group.list_column in table.column_names:
            fields[group.field] = table.column(group.list_column).combine_chunks().flatten().to_numpy().reshape(shape)
            continue
        if not group.in_csv:
            fields[group.field] = np.full(shape, np.nan)
            continue
        values = np.stack([_column_values(table.column(n)) for n in group.names], axis=1)
        fields[group.field] = group.from_file(values if len(group.names) > 1 else values[:, 0])
    return fmt.result_type(**fields, header=header)


def _column_values(column: pa.ChunkedArray) -> np.ndarray:
    """A column as NumPy; a CSV column of empty strings reads back as nulls: they were ""."""
    if pa.types.is_null(column.type) or pa.types.is_string(column.type):
        return np.array(["" if v is None else v for v in column.to_pylist()], dtype=np.str_)
    return column.to_numpy()


def iter_batches(path: Path, batch_rows: int = 1024) -> Iterator[FaceTable]:
    """Stream a stage file as result chunks (bounded memory)."""
    path = Path(path)
    header = read_header(path)
    fmt = FORMATS[header["format"].removeprefix("facecli.")]
    try:
        if path.suffix == ".csv":
            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 22))
            batches = (pa.Table.from_batches([b]) for b in reader)
        else:
            batches = (pa.Table.from_batches([b]) for b in pq.ParquetFile(path).iter_batches(batch_rows))
        for table in batches:
            yield _rows_from_arrow(fmt, table, header)
    except (OSError, KeyError, pa.ArrowException) as exc:
        raise InputError(f"cannot read stage file ({exc}); re-run the stage that made it", path) from exc


def read_table(path: Path) -> FaceTable:
    """A whole stage file as its typed result (Faces or Landmarks)."""
    header = read_header(path)
    fmt = FORMATS[header["format"].removeprefix("facecli.")]
    return fmt.result_type.concat(list(iter_batches(path)), header=header)
