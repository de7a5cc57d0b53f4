"""Write new meshes from arrays: OBJ or PLY for one face, a streamed glTF binary (.glb) for a sequence.

:mod:`facecli.meshio` rewrites meshes that exist, keeping their layout; this module makes new ones
(for stages such as ``reconstruct``). OBJ and PLY store positions in the caller's units (facecli's
are mm); the GLB converts them to glTF's metres and axes. Every file is written atomically.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
import tempfile
from collections.abc import Callable
from os.path import relpath
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .atomic import atomic_output
from .errors import OutputError

# Morph weights keyframes hold frames² floats (glTF shows one target at a time only through
# weights, one per target per keyframe): 20000 frames are 1.6 GB of them.
MAX_GLB_FRAMES = 20_000
MAX_GLB_BYTES = 2**32 - 1  # the GLB header stores the file's length as uint32
JSON_BYTES_PER_FRAME = 512  # allowance for a frame's accessor and names in the JSON (about 270 in practice)
JSON_FIXED_BYTES = 1 << 16  # allowance for the rest of the JSON (about 1 kB) and the chunk headers
COPY_BLOCK_BYTES = 1 << 22

GLB_MAGIC, GLB_VERSION = b"glTF", 2
CHUNK_JSON, CHUNK_BIN = 0x4E4F534A, 0x004E4942
FLOAT, UNSIGNED_INT = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
TRIANGLES_MODE = 4
COMPONENT_DTYPES = {5120: "i1", 5121: "u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
TYPE_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}

# OpenCV camera axes (x right, y down, z away from the camera) to glTF's (x right, y up, z towards
# the viewer): a 180° rotation about x, so handedness and the triangles' winding are kept.
CV_TO_GLTF = np.array([1.0, -1.0, -1.0])


def material_path(obj_path: Path) -> Path:
    """The .mtl :func:`write_obj` writes beside an OBJ with a texture: the OBJ's stem, whitespace
    made ``_`` (``mtllib`` reads a space as the start of another file name)."""
    return obj_path.with_name(re.sub(r"\s", "_", obj_path.stem) + ".mtl")


def write_obj(path: str | Path, vertices: np.ndarray, triangles: np.ndarray, uv: np.ndarray | None = None,
              texture_png: str | Path | None = None) -> None:
    """Write a new OBJ mesh atomically.

    ``vertices`` (N, 3) in the caller's units, kept to 6 significant digits; ``triangles`` (T, 3)
    0-based indices (written 1-based). ``uv`` (N, 2): one texture coordinate per vertex in OBJ's
    convention (origin at the image's bottom left, v up); faces then read ``f a/a b/b c/c``.
    ``texture_png`` (needs ``uv``): the image's path; a .mtl beside the OBJ, written first, names
    it relative to the OBJ's folder (:func:`material_path`).
    """
    path = Path(path)
    vertices, triangles = _checked_mesh(vertices, triangles)
    if uv is not None:
        uv = _checked_uv(uv, len(vertices))
    elif texture_png is not None:
        raise ValueError("a texture needs uv coordinates to map it")
    lines = [f"# facecli: {len(vertices)} vertices, {len(triangles)} triangles\n"]
    if texture_png is not None:
        material = material_path(path).stem
        texture = Path(relpath(texture_png, path.parent)).as_posix()
        _write_file(material_path(path), _mtl(material, texture), "material")
        lines += [f"mtllib {material}.mtl\n", f"usemtl {material}\n"]
    lines += [f"v {x:.6g} {y:.6g} {z:.6g}\n" for x, y, z in vertices.tolist()]
    corners = triangles + 1
    if uv is None:
        lines += [f"f {a} {b} {c}\n" for a, b, c in corners.tolist()]
    else:
        lines += [f"vt {u:.6g} {v:.6g}\n" for u, v in uv.tolist()]
        lines += [f"f {a}/{a} {b}/{b} {c}/{c}\n" for a, b, c in corners.tolist()]
    _write_file(path, "".join(lines).encode(), "mesh")


def _mtl(material: str, texture: str) -> bytes:
    """A matte material (no specular) whose colour is the image ``texture``."""
    return f"newmtl {material}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {texture}\n".encode()


def write_ply(path: str | Path, vertices: np.ndarray, triangles: np.ndarray) -> None:
    """Write a new binary little-endian PLY mesh atomically: float32 x y z, faces as uchar/int lists.

    ``vertices`` (N, 3) in the caller's units; ``triangles`` (T, 3) 0-based indices.
    """
    vertices, triangles = _checked_mesh(vertices, triangles)
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment facecli\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(triangles)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    faces = np.empty(len(triangles), [("count", "u1"), ("corners", "<i4", (3,))])  # packed: 13 bytes a face
    faces["count"], faces["corners"] = 3, triangles
    _write_file(path, header.encode() + vertices.astype("<f4").tobytes() + faces.tobytes(), "mesh")


def _write_file(path: str | Path, data: bytes, what: str) -> None:
    try:
        with atomic_output(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise OutputError(f"cannot write the {what} ({exc.strerror or exc}); choose another -o folder", path) from exc


def _checked_mesh(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) float64 vertices and (T, 3) int64 triangles; ValueError unless finite and in range."""
    vertices, triangles = np.asarray(vertices, np.float64), np.asarray(triangles)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not len(vertices) or not np.isfinite(vertices).all():
        raise ValueError(f"expected finite (N, 3) vertices, got shape {vertices.shape}")
    if triangles.ndim != 2 or triangles.shape[1] != 3 or not len(triangles) or triangles.dtype.kind not in "iu":
        raise ValueError(f"expected (T, 3) integer triangles, got {triangles.dtype} {triangles.shape}")
    if triangles.min() < 0 or triangles.max() >= len(vertices):
        raise ValueError(f"triangle indices must lie in 0..{len(vertices) - 1}, "
                         f"got {triangles.min()}..{triangles.max()}")
    return vertices, triangles.astype(np.int64)


def _checked_uv(uv: np.ndarray, count: int) -> np.ndarray:
    uv = np.asarray(uv, np.float64)
    if uv.shape != (count, 2) or not np.isfinite(uv).all():
        raise ValueError(f"expected finite ({count}, 2) uv, one per vertex, got shape {uv.shape}")
    return uv


class _Bin:
    """The GLB's BIN chunk as buffer views, each with the function that writes its bytes."""

    def __init__(self) -> None:
        self.views: list[dict] = []
        self.writers: list[Callable[[BinaryIO], object]] = []
        self.length = 0

    def view(self, nbytes: int, write: Callable[[BinaryIO], object], **fields: int) -> int:
        """Append a view of ``nbytes`` (a multiple of 4: every part is 4-byte values, so all stay aligned)."""
        self.views.append({"buffer": 0, "byteOffset": self.length, "byteLength": nbytes, **fields})
        self.writers.append(write)
        self.length += nbytes
        return len(self.views) - 1


def _accessor(view: int, component: int, count: int, kind: str, values: np.ndarray | None = None,
              byte_offset: int = 0) -> dict:
    """An accessor; ``values`` (count, width) give its min and max (required on POSITION and animation input)."""
    accessor = {"bufferView": view, "byteOffset": byte_offset, "componentType": component, "count": count,
                "type": kind}
    if values is not None:
        accessor["min"] = np.atleast_2d(values).min(axis=0).tolist()
        accessor["max"] = np.atleast_2d(values).max(axis=0).tolist()
    return accessor


def _write_identity(out: BinaryIO, size: int) -> None:
    """Write the float32 ``size`` × ``size`` identity a block of rows at a time: whole, it may not fit in memory."""
    rows = max(1, COPY_BLOCK_BYTES // (4 * size))
    for start in range(0, size, rows):
        block = np.zeros((min(rows, size - start), size), "<f4")
        block[np.arange(len(block)), start + np.arange(len(block))] = 1
        out.write(block.tobytes())


class GlbSequenceWriter:
    """Stream a mesh sequence into one glTF 2.0 binary (.glb) that viewers play and Blender imports.

    One mesh holds ``base_vertices`` (N, 3); each :meth:`add` appends a morph target with the
    frame's POSITION offset from the base, and a STEP animation of the node's morph weights shows
    target k alone from frame k's time on. Blender imports the targets as shape keys named by
    ``mesh.extras.targetNames`` (``frame_00000``, ...). With no frame added the file holds the base
    mesh alone.

    Positions come in OpenCV camera axes and the caller's units; ``unit_scale`` converts to metres
    (0.01 from cm, 0.001 from mm). No normals are stored: viewers then compute them from the morphed
    positions (flat shaded), right in every frame where base normals would not be.

    Offsets go to an unnamed temporary file in the output folder while adding, so memory does not
    grow with the frames; :meth:`close` writes the GLB atomically. Used as a context manager, an
    exception leaves nothing at ``path``. At most MAX_GLB_FRAMES frames: the weights keyframes hold
    frames² floats (1.6 GB at the cap); write an .obj or .ply per frame for longer takes.
    """

    def __init__(self, path: str | Path, base_vertices: np.ndarray, triangles: np.ndarray,
                 unit_scale: float = 0.01, name: str = "face") -> None:
        base, triangles = _checked_mesh(base_vertices, triangles)
        if not (math.isfinite(unit_scale) and unit_scale > 0):
            raise ValueError(f"unit_scale must be a positive number of metres per unit, got {unit_scale}")
        self.path, self.name = Path(path), name
        self._scale = CV_TO_GLTF * unit_scale
        self._base = (base * self._scale).astype("<f4")
        self._indices = triangles.astype("<u4")
        self._times: list[float] = []  # float32 values: what the file will hold
        self._bounds: list[np.ndarray] = []  # (2, 3) min and max of each target's offsets
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # In the output folder, where the GLB needs the room anyway (/tmp may be small or in memory);
            # unnamed, so even a killed run leaves nothing behind.
            self._offsets: BinaryIO | None = tempfile.TemporaryFile(dir=self.path.parent)
        except OSError as exc:
            raise OutputError(f"cannot write here ({exc.strerror or exc}); choose another -o folder",
                              self.path) from exc

    def __enter__(self) -> GlbSequenceWriter:
        return self

    def __exit__(self, exc_type: type | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    @property
    def frames(self) -> int:
        """Frames added so far."""
        return len(self._times)

    def add(self, vertices: np.ndarray, time_s: float) -> None:
        """Append a frame: ``vertices`` (N, 3) in the base's units and axes, shown from ``time_s`` seconds.

        Times start at 0 or later and must increase (as float32, the precision the file keeps).
        """
        offsets = self._offsets_file()
        vertices = np.asarray(vertices, np.float64)
        if vertices.shape != self._base.shape or not np.isfinite(vertices).all():
            raise ValueError(f"expected finite {self._base.shape} vertices, got shape {vertices.shape}")
        time32 = float(np.float32(time_s))
        if not (math.isfinite(time32) and time32 >= 0 and (not self._times or time32 > self._times[-1])):
            raise ValueError(f"frame times must be finite, >= 0 s and increasing; got {time_s} after "
                             f"{self._times[-1] if self._times else 'none'}")
        self._check_room(self.frames + 1)
        # Against the float32 base, so base + offset in a viewer rounds only once.
        offset = (vertices * self._scale - self._base).astype("<f4")
        try:
            offsets.write(offset.tobytes())
        except OSError as exc:
            raise OutputError(f"cannot write the frames ({exc.strerror or exc}); free space or choose another -o "
                              "folder", self.path) from exc
        self._bounds.append(np.stack([offset.min(axis=0), offset.max(axis=0)]))
        self._times.append(time32)

    def close(self) -> None:
        """Write the GLB atomically and free the temporary file; later calls do nothing."""
        if self._offsets is None:
            return
        try:
            gltf, binary = self._layout()
            self._write(gltf, binary)
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop the frames added so far without writing anything."""
        if self._offsets is not None:
            self._offsets.close()
            self._offsets = None

    def _offsets_file(self) -> BinaryIO:
        if self._offsets is None:
            raise ValueError(f"{self.path}: the GLB writer is closed")
        return self._offsets

    def _check_room(self, frames: int) -> None:
        if frames > MAX_GLB_FRAMES:
            raise ValueError(f"over {MAX_GLB_FRAMES} frames: a GLB's morph weights grow as frames² "
                             f"({4 * MAX_GLB_FRAMES**2 / 1e9:.2g} GB at {MAX_GLB_FRAMES}); write an .obj or .ply "
                             "per frame, or split the take")
        binary = self._base.nbytes * (1 + frames) + self._indices.nbytes + 4 * (frames + frames**2)
        if binary + JSON_BYTES_PER_FRAME * frames + JSON_FIXED_BYTES > MAX_GLB_BYTES:
            raise ValueError(f"{frames} frames of {len(self._base)} vertices would pass the GLB's 4 GB limit; "
                             "write an .obj or .ply per frame, or split the take")

    def _layout(self) -> tuple[dict, _Bin]:
        """The glTF JSON and the BIN chunk it describes."""
        binary = _Bin()
        base_view = binary.view(self._base.nbytes, lambda out: out.write(self._base.tobytes()), target=ARRAY_BUFFER)
        index_view = binary.view(self._indices.nbytes, lambda out: out.write(self._indices.tobytes()),
                                 target=ELEMENT_ARRAY_BUFFER)
        accessors = [_accessor(base_view, FLOAT, len(self._base), "VEC3", self._base),
                     _accessor(index_view, UNSIGNED_INT, self._indices.size, "SCALAR")]
        primitive = {"attributes": {"POSITION": 0}, "indices": 1, "mode": TRIANGLES_MODE}
        mesh = {"name": self.name, "primitives": [primitive]}
        gltf = {
            "asset": {"version": "2.0", "generator": "facecli"},
            "scene": 0,
            "scenes": [{"nodes": [0]}],
            "nodes": [{"name": self.name, "mesh": 0}],
            "meshes": [mesh],
            "accessors": accessors,
            "bufferViews": binary.views,
        }
        if self.frames:
            primitive["targets"] = self._add_targets(binary, accessors)
            mesh["extras"] = {"targetNames": [f"frame_{k:05d}" for k in range(self.frames)]}
            gltf["animations"] = [self._add_animation(binary, accessors)]
        gltf["buffers"] = [{"byteLength": binary.length}]
        return gltf, binary

    def _add_targets(self, binary: _Bin, accessors: list[dict]) -> list[dict]:
        frame_bytes = self._base.nbytes
        # byteStride is required when several vertex accessors share a view.
        view = binary.view(frame_bytes * self.frames, self._copy_offsets, target=ARRAY_BUFFER, byteStride=12)
        first = len(accessors)
        accessors += [_accessor(view, FLOAT, len(self._base), "VEC3", bounds, k * frame_bytes)
                      for k, bounds in enumerate(self._bounds)]
        return [{"POSITION": first + k} for k in range(self.frames)]

    def _add_animation(self, binary: _Bin, accessors: list[dict]) -> dict:
        """STEP keyframes at the frame times; at keyframe k target k weighs 1 and the others 0."""
        times = np.array(self._times, "<f4")
        count = self.frames
        time_view = binary.view(times.nbytes, lambda out: out.write(times.tobytes()))
        weight_view = binary.view(4 * count * count, lambda out: _write_identity(out, count))
        accessors += [_accessor(time_view, FLOAT, count, "SCALAR", times[:, None]),
                      _accessor(weight_view, FLOAT, count * count, "SCALAR")]
        sampler = {"input": len(accessors) - 2, "output": len(accessors) - 1, "interpolation": "STEP"}
        return {"name": self.name, "samplers": [sampler],
                "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}]}

    def _copy_offsets(self, out: BinaryIO) -> None:
        offsets = self._offsets_file()
        offsets.flush()
        offsets.seek(0)
        shutil.copyfileobj(offsets, out, COPY_BLOCK_BYTES)

    def _write(self, gltf: dict, binary: _Bin) -> None:
        """Header, JSON chunk (space-padded to 4 bytes), BIN chunk (4-byte values: no padding needed)."""
        text = json.dumps(gltf, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 4)
        length = 12 + 8 + len(text) + 8 + binary.length
        try:
            with atomic_output(self.path) as tmp, tmp.open("wb") as out:
                out.write(struct.pack("<4sII", GLB_MAGIC, GLB_VERSION, length))
                out.write(struct.pack("<II", len(text), CHUNK_JSON) + text)
                out.write(struct.pack("<II", binary.length, CHUNK_BIN))
                for write in binary.writers:
                    write(out)
        except OSError as exc:
            raise OutputError(f"cannot write the GLB ({exc.strerror or exc}); choose another -o folder",
                              self.path) from exc


def read_glb(path: str | Path) -> dict:
    """Read a .glb's first mesh and its first morph-weights animation (reads the whole file into memory).

    Returns ``json`` (the glTF JSON), ``positions`` (N, 3) and ``triangles`` (T, 3) of the first
    primitive, ``targets`` (its POSITION offsets, each (N, 3)), ``times`` (K,) seconds and
    ``weights`` (K, targets) of the first ``weights`` channel (empty when there is none). Values as
    stored: metres, glTF axes. ValueError for a file that is not a whole GLB 2.0; accessors must be
    dense and in the BIN chunk.
    """
    gltf, binary = _glb_chunks(Path(path).read_bytes())
    primitive = gltf["meshes"][0]["primitives"][0]
    positions = _read_accessor(gltf, binary, primitive["attributes"]["POSITION"])
    triangles = _read_accessor(gltf, binary, primitive["indices"]).reshape(-1, 3)
    targets = [_read_accessor(gltf, binary, target["POSITION"]) for target in primitive.get("targets", [])]
    channels = [(animation, channel) for animation in gltf.get("animations", [])
                for channel in animation["channels"] if channel["target"]["path"] == "weights"]
    if channels:
        animation, channel = channels[0]
        sampler = animation["samplers"][channel["sampler"]]
        times = _read_accessor(gltf, binary, sampler["input"])[:, 0]
        weights = _read_accessor(gltf, binary, sampler["output"]).reshape(len(times), -1)
    else:
        times, weights = np.zeros(0, np.float32), np.zeros((0, len(targets)), np.float32)
    return {"json": gltf, "positions": positions, "triangles": triangles, "targets": targets, "times": times,
            "weights": weights}


def _glb_chunks(data: bytes) -> tuple[dict, memoryview]:
    """The JSON and the BIN chunk (empty when absent) of a GLB file's bytes."""
    if len(data) < 12:
        raise ValueError(f"not a GLB: {len(data)} bytes, shorter than the 12-byte header")
    magic, version, length = struct.unpack_from("<4sII", data)
    if magic != GLB_MAGIC:
        raise ValueError(f"not a GLB: starts with {magic!r}, not b'glTF'")
    if version != GLB_VERSION:
        raise ValueError(f"GLB version {version}; only version 2 is read")
    if length != len(data):
        raise ValueError(f"GLB header says {length} bytes but the file holds {len(data)} (truncated?)")
    chunks, at, view = [], 12, memoryview(data)
    while at < length:
        if at + 8 > length:
            raise ValueError(f"GLB truncated inside a chunk header at byte {at}")
        size, kind = struct.unpack_from("<II", data, at)
        if at + 8 + size > length:
            raise ValueError(f"GLB truncated: a {size}-byte chunk at byte {at} runs past the end")
        chunks.append((kind, view[at + 8: at + 8 + size]))
        at += 8 + size
    if not chunks or chunks[0][0] != CHUNK_JSON:
        raise ValueError("not a GLB: the first chunk is not JSON")
    binary = chunks[1][1] if len(chunks) > 1 and chunks[1][0] == CHUNK_BIN else memoryview(b"")
    return json.loads(bytes(chunks[0][1])), binary


def _read_accessor(gltf: dict, binary: memoryview, index: int) -> np.ndarray:
    """Accessor ``index`` as a (count, width) array copied out of the BIN chunk."""
    accessor = gltf["accessors"][index]
    if "bufferView" not in accessor or "sparse" in accessor:
        raise ValueError(f"accessor {index} is sparse or has no buffer view; not supported")
    view = gltf["bufferViews"][accessor["bufferView"]]
    dtype, width = np.dtype(COMPONENT_DTYPES[accessor["componentType"]]), TYPE_WIDTHS[accessor["type"]]
    stride = view.get("byteStride", dtype.itemsize * width)
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    count = accessor["count"]
    end = start + stride * (count - 1) + dtype.itemsize * width
    if end > view.get("byteOffset", 0) + view["byteLength"] or end > len(binary):
        raise ValueError(f"accessor {index} runs past its buffer view (truncated or corrupt GLB)")
    return np.ndarray((count, width), dtype, binary, start, (stride, dtype.itemsize)).copy()
