"""Read and write OBJ and PLY meshes, changing nothing but the vertex positions.

A :class:`Mesh` keeps what it needs to write its file back byte for byte except the
positions: every OBJ line (texture coordinates, normals, faces, groups, materials, comments,
and anything after x y z on a ``v`` line such as vertex colours), and a PLY file's header,
other vertex properties and other elements. Vertex lines of text files are rebuilt with single
spaces between their tokens; every other line is kept verbatim.

PLY: ``ascii``, ``binary_little_endian`` and ``binary_big_endian``; x, y and z must be
``float`` or ``double`` scalar vertex properties. ASCII files must hold one element per line
(as every writer does). Units are the file's own (facecli's meshes are in mm).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_output
from .errors import InputError, OutputError

MAX_FILE_BYTES = 1_000_000_000  # far above any face mesh (FLAME's OBJ is under 1 MB); read whole into memory
MAX_VERTICES = 5_000_000
MAX_PLY_HEADER_BYTES = 1 << 20
MESH_SUFFIXES = (".obj", ".ply")

PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
PLY_BYTE_ORDERS = {"binary_little_endian": "<", "binary_big_endian": ">"}


@dataclass(frozen=True)
class _TextLayout:
    """An OBJ or ASCII PLY file as lines; vertex lines are rebuilt from tokens on write."""

    lines: list[str]  # latin-1 decoded (every byte round-trips), line endings kept
    vertex_lines: np.ndarray  # (N,) index in ``lines`` of each vertex's line
    xyz_columns: tuple[int, int, int]  # token positions of x, y, z on a vertex line
    float32: bool  # positions declared ``float``: 9 significant digits hold them exactly

    def encode(self, vertices: np.ndarray) -> bytes:
        lines = list(self.lines)
        fmt = "{:.9g}".format if self.float32 else repr  # repr: shortest text that reads back exactly
        cx, cy, cz = self.xyz_columns
        for row, (x, y, z) in zip(self.vertex_lines.tolist(), vertices.tolist()):
            line = lines[row]
            text = line.rstrip("\r\n")
            tokens = text.split()
            tokens[cx], tokens[cy], tokens[cz] = fmt(x), fmt(y), fmt(z)
            lines[row] = " ".join(tokens) + line[len(text):]
        return "".join(lines).encode("latin-1")


@dataclass(frozen=True)
class _BinaryLayout:
    """A binary PLY file: the bytes before the vertex block, the block itself, the bytes after."""

    head: bytes  # header and any elements declared before ``vertex``
    block: np.ndarray  # (N,) structured array of every vertex property, read-only
    tail: bytes  # faces and any other elements

    def encode(self, vertices: np.ndarray) -> bytes:
        block = self.block.copy()
        for axis, name in enumerate("xyz"):
            block[name] = vertices[:, axis]
        return self.head + block.tobytes() + self.tail


@dataclass(frozen=True, eq=False)
class Mesh:
    """A mesh file's vertex positions, and what it takes to write the same file with others."""

    path: Path
    vertices: np.ndarray  # (N, 3) float64, the file's units
    layout: _TextLayout | _BinaryLayout = field(repr=False)


def mesh_paths(folder: str | Path) -> list[Path]:
    """The .obj and .ply files in ``folder`` (not hidden ones), in natural order (2 before 10)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder; give the folder that holds the meshes", folder)
    paths = [p for p in folder.iterdir() if p.suffix.lower() in MESH_SUFFIXES and not p.name.startswith(".")]
    if not paths:
        raise InputError("no .obj or .ply meshes in this folder; check the path", folder)
    return sorted(paths, key=_natural_key)


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def read_mesh(path: str | Path) -> Mesh:
    """Read an OBJ or PLY mesh (picked by suffix); InputError naming the file when it cannot be used."""
    path = Path(path)
    parsers = {".obj": _parse_obj, ".ply": _parse_ply}
    if path.suffix.lower() not in parsers:
        raise InputError("not a mesh: expected an .obj or .ply file", path)
    vertices, layout = parsers[path.suffix.lower()](_read_bytes(path), path)
    return Mesh(path, _checked_vertices(vertices, path), layout)


def write_mesh(path: str | Path, mesh: Mesh, vertices: np.ndarray | None = None) -> None:
    """Write ``mesh`` to ``path`` (atomically) in its own format, with ``vertices`` (N, 3) as positions."""
    vertices = mesh.vertices if vertices is None else np.asarray(vertices, np.float64)
    if vertices.shape != mesh.vertices.shape or not np.isfinite(vertices).all():
        raise ValueError(f"expected finite {mesh.vertices.shape} vertices, got {vertices.shape}")
    try:
        with atomic_output(path) as tmp:
            tmp.write_bytes(mesh.layout.encode(vertices))
    except OSError as exc:
        raise OutputError(f"cannot write the mesh ({exc.strerror or exc}); choose another -o folder", path) from exc


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise InputError("is a folder, not a mesh file", path)
        if size > MAX_FILE_BYTES:
            raise InputError(f"file is {size / 1e9:.1f} GB, over the {MAX_FILE_BYTES / 1e9:.0f} GB cap; decimate it",
                             path)
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found; check the path", path) from None
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", path) from exc
    if not data or data.isspace():
        raise InputError("file is empty; export the mesh again", path)
    return data


def _checked_vertices(vertices: np.ndarray, path: Path) -> np.ndarray:
    if len(vertices) < 3:
        raise InputError(f"only {len(vertices)} vertices; a rigid fit needs at least 3", path)
    if not np.isfinite(vertices).all():
        raise InputError("vertex positions hold NaN or infinity; fix or export the mesh again", path)
    vertices.setflags(write=False)  # a Mesh is frozen: its positions too
    return vertices


def _check_count(count: int, path: Path) -> None:
    if count > MAX_VERTICES:
        raise InputError(f"{count} vertices, over the {MAX_VERTICES} cap; decimate the mesh", path)


def _split_lines(data: bytes) -> list[str]:
    """Lines with their endings; latin-1 maps every byte to one character, so joining gives the bytes back.

    Split at newlines only: str.splitlines would also split at bytes such as 0x85 or 0x0c.
    """
    return [line for line in re.split(r"(?<=\n)", data.decode("latin-1")) if line]


def _parse_floats(lines: list[str], rows: np.ndarray, columns: tuple[int, int, int], path: Path) -> np.ndarray:
    vertices = np.empty((len(rows), 3))
    for i, row in enumerate(rows.tolist()):
        tokens = lines[row].split()
        try:
            vertices[i] = [float(tokens[c]) for c in columns]
        except (ValueError, IndexError):
            raise InputError(f"line {row + 1} is not a vertex with x, y, z numbers: {lines[row].strip()[:60]!r}",
                             path) from None
    return vertices


def _parse_obj(data: bytes, path: Path) -> tuple[np.ndarray, _TextLayout]:
    lines = _split_lines(data)
    rows = np.array([i for i, line in enumerate(lines) if line.lstrip().startswith(("v ", "v\t"))], np.intp)
    if not len(rows):
        raise InputError("no vertex ('v x y z') lines: not an OBJ mesh", path)
    _check_count(len(rows), path)
    columns = (1, 2, 3)
    return _parse_floats(lines, rows, columns, path), _TextLayout(lines, rows, columns, float32=False)


@dataclass(frozen=True)
class _PlyProperty:
    name: str
    dtype: str  # numpy code without byte order: "f4", "u1", ...
    count_dtype: str | None = None  # list properties: the type of the length before the items


@dataclass(frozen=True)
class _PlyElement:
    name: str
    count: int
    properties: list[_PlyProperty]

    def record_dtype(self, order: str) -> np.dtype:
        """The element as one fixed-size record (scalar properties only)."""
        return np.dtype([(p.name, order + p.dtype) for p in self.properties])


def _parse_ply(data: bytes, path: Path) -> tuple[np.ndarray, _TextLayout | _BinaryLayout]:
    fmt, elements, body_start = _parse_ply_header(data, path)
    names = [e.name for e in elements]
    if "vertex" not in names:
        raise InputError("no 'vertex' element in the PLY header: not a mesh", path)
    vertex = elements[names.index("vertex")]
    _check_count(vertex.count, path)
    props = {p.name: p for p in vertex.properties}
    if any(p.count_dtype for p in vertex.properties):
        raise InputError("vertex element has a list property; only scalar vertex properties are supported", path)
    for axis in "xyz":
        if axis not in props or props[axis].dtype not in ("f4", "f8"):
            raise InputError(f"vertex property {axis} is missing or not float/double", path)
    if fmt == "ascii":
        return _parse_ply_ascii(data, body_start, elements, vertex, path)
    return _parse_ply_binary(data, body_start, elements, vertex, PLY_BYTE_ORDERS[fmt], path)


def _parse_ply_header(data: bytes, path: Path) -> tuple[str, list[_PlyElement], int]:
    """(format, elements, offset of the body)."""
    end = re.search(rb"end_header[ \t]*\r?\n", data[:MAX_PLY_HEADER_BYTES])
    if not data.startswith(b"ply") or end is None:
        raise InputError("not a PLY file (no 'ply' ... 'end_header' header)", path)
    fmt, elements = None, []
    for line in data[: end.start()].decode("latin-1").splitlines()[1:]:
        words = line.split()
        try:
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "format" and words[1] in ("ascii", *PLY_BYTE_ORDERS):
                fmt = words[1]
            elif words[0] == "element":
                elements.append(_PlyElement(words[1], int(words[2]), []))
            elif words[0] == "property" and words[1] == "list":
                elements[-1].properties.append(_PlyProperty(words[4], PLY_TYPES[words[3]], PLY_TYPES[words[2]]))
            elif words[0] == "property":
                elements[-1].properties.append(_PlyProperty(words[2], PLY_TYPES[words[1]]))
            else:
                raise ValueError(line)
        except (IndexError, KeyError, ValueError):
            raise InputError(f"unreadable PLY header line {line.strip()[:60]!r}", path) from None
    if fmt is None:
        raise InputError("PLY header has no ascii/binary format line", path)
    for element in elements:
        names = [p.name for p in element.properties]
        if len(set(names)) < len(names):
            raise InputError(f"PLY element '{element.name}' declares a property twice", path)
    if any(e.count < 0 for e in elements):
        raise InputError("PLY header declares a negative element count", path)
    return fmt, elements, end.end()


def _truncated(path: Path, element: str) -> InputError:
    return InputError(f"file ends inside the '{element}' element (truncated); export or copy it again", path)


def _parse_ply_ascii(data: bytes, start: int, elements: list[_PlyElement], vertex: _PlyElement,
                     path: Path) -> tuple[np.ndarray, _TextLayout]:
    header_lines = _split_lines(data[:start])
    body_lines = _split_lines(data[start:])
    row = 0
    for element in elements:
        if row + element.count > len(body_lines):
            raise _truncated(path, element.name)
        for line in body_lines[row: row + element.count]:
            if not _ascii_instance_complete(line.split(), element.properties):
                raise InputError(f"a '{element.name}' line does not match the header (truncated or corrupt file): "
                                 f"{line.strip()[:60]!r}", path)
        if element is vertex:
            vertex_start = row
        row += element.count
    names = [p.name for p in vertex.properties]
    columns = (names.index("x"), names.index("y"), names.index("z"))
    rows = np.arange(vertex.count) + vertex_start + len(header_lines)
    lines = header_lines + body_lines
    float32 = any(p.dtype == "f4" for p in vertex.properties if p.name in "xyz")
    return _parse_floats(lines, rows, columns, path), _TextLayout(lines, rows, columns, float32)


def _ascii_instance_complete(tokens: list[str], properties: list[_PlyProperty]) -> bool:
    """Whether one ASCII element line holds exactly the values its properties declare."""
    at = 0
    for prop in properties:
        if prop.count_dtype is None:
            at += 1
        elif at < len(tokens) and tokens[at].isdigit():
            at += 1 + int(tokens[at])
        else:
            return False
    return at == len(tokens)


def _parse_ply_binary(data: bytes, start: int, elements: list[_PlyElement], vertex: _PlyElement, order: str,
                      path: Path) -> tuple[np.ndarray, _BinaryLayout]:
    offset, vertex_start = start, start
    for element in elements:
        if element is vertex:
            vertex_start = offset
        offset += _binary_element_bytes(data, offset, element, order, path)
    dtype = vertex.record_dtype(order)
    block = np.frombuffer(data, dtype, vertex.count, vertex_start).copy()  # a copy lets ``data`` go
    block.setflags(write=False)
    vertex_end = vertex_start + block.nbytes
    vertices = np.stack([block[axis].astype(np.float64) for axis in "xyz"], axis=1)
    return vertices, _BinaryLayout(data[:vertex_start], block, data[vertex_end:])


def _binary_element_bytes(data: bytes, offset: int, element: _PlyElement, order: str, path: Path) -> int:
    """Bytes ``element`` takes from ``offset``; InputError when the file ends first."""
    if not any(p.count_dtype for p in element.properties):
        size = element.count * element.record_dtype(order).itemsize
    elif element.count == 0:
        size = 0
    else:
        size = _uniform_list_bytes(data, offset, element, order) or _walk_list_bytes(data, offset, element, order)
    if size is None or offset + size > len(data):
        raise _truncated(path, element.name)
    return size


def _list_dtype(element: _PlyElement, order: str, lengths: list[int]) -> np.dtype:
    """Record type of an instance whose lists have ``lengths`` items."""
    fields, lists = [], iter(lengths)
    for i, prop in enumerate(element.properties):
        if prop.count_dtype is None:
            fields.append((f"s{i}", order + prop.dtype))
        else:
            fields += [(f"n{i}", order + prop.count_dtype), (f"l{i}", order + prop.dtype, (next(lists),))]
    return np.dtype(fields)


def _uniform_list_bytes(data: bytes, offset: int, element: _PlyElement, order: str) -> int | None:
    """Fast path: every instance's lists as long as the first one's (all triangles, say); else None."""
    first_end, lengths = _walk_instance(data, offset, element, order)
    if first_end is None or first_end > len(data):  # also keeps a garbage length from sizing a huge dtype
        return None
    dtype = _list_dtype(element, order, lengths)
    if offset + element.count * dtype.itemsize > len(data):
        return None
    records = np.frombuffer(data, dtype, element.count, offset)
    counts = [name for name in dtype.names if name.startswith("n")]
    if all((records[name] == n).all() for name, n in zip(counts, lengths)):
        return element.count * dtype.itemsize
    return None


def _walk_instance(data: bytes, offset: int, element: _PlyElement, order: str) -> tuple[int | None, list[int]]:
    """End offset of one instance (None past the end of the file or at a negative length) and its list lengths."""
    lengths = []
    for prop in element.properties:
        if prop.count_dtype is not None:
            size = np.dtype(prop.count_dtype).itemsize
            if offset + size > len(data):
                return None, lengths
            n = int.from_bytes(data[offset: offset + size], "little" if order == "<" else "big",
                               signed=prop.count_dtype.startswith("i"))
            if n < 0:
                return None, lengths
            lengths.append(n)
            offset += size + n * np.dtype(prop.dtype).itemsize
        else:
            offset += np.dtype(prop.dtype).itemsize
    return offset, lengths


def _walk_list_bytes(data: bytes, offset: int, element: _PlyElement, order: str) -> int | None:
    """Slow path: walk instance by instance (mixed triangles and quads); None when the file ends first."""
    start = offset
    for _ in range(element.count):
        offset, _lengths = _walk_instance(data, offset, element, order)
        if offset is None or offset > len(data):
            return None
    return offset - start
