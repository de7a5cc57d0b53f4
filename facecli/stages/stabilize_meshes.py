"""``stabilize --mesh``: rigid alignment of a folder of face meshes that share a topology.

Each mesh gets the rigid transform (R, t) that brings its skull onto the reference mesh's,
found by reweighted Kabsch that trusts stable vertices and discounts the ones expression moved
(:mod:`facecli.rigid_align`). Writes the aligned meshes (same names, same formats, only the
positions change) and ``transforms.csv``, written last.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..atomic import atomic_output, make_folder
from ..errors import UsageError
from ..meshio import mesh_paths, read_mesh, write_mesh
from ..rigid_align import RigidTransform, read_weights, stabilize_meshes
from .common import all_or_nothing

TRANSFORMS_CSV = "transforms.csv"
CSV_COLUMNS = ("mesh", *(f"r{i}{j}" for i in range(3) for j in range(3)), "tx", "ty", "tz", "iterations",
               "residual")


def _reference_index(paths: list[Path], ref: str | None) -> int:
    if ref is None:
        return 0
    for i, path in enumerate(paths):
        if ref in (path.name, str(path)) or Path(ref).resolve() == path.resolve():
            return i
    raise UsageError(f"--ref {ref} is not one of the meshes; give one of their file names")


def stabilize_mesh_folder(folder: str | Path, out_dir: str | Path, ref: str | None = None,
                          weights: str | Path | None = None, smooth: bool = False) -> list[tuple[str, RigidTransform]]:
    """Align every mesh of ``folder`` to the reference (``ref``: a file name; default the
    first in natural order); write them and ``transforms.csv`` into ``out_dir``.

    ``weights``: a text file of one weight per vertex (default: MediaPipe's rigid points for
    its topology, else estimated from the set). ``smooth``: the files are a time sequence
    (natural order) and the transforms are smoothed along it.
    """
    folder, out_dir = Path(folder), Path(out_dir)
    paths = mesh_paths(folder)
    if out_dir.resolve() == folder.resolve():
        raise UsageError("-o must not be the input folder: the meshes would be overwritten", out_dir)
    meshes = [read_mesh(p) for p in paths]
    user = read_weights(weights, len(meshes[0].vertices)) if weights is not None else None
    transforms = stabilize_meshes([m.vertices for m in meshes], _reference_index(paths, ref), user, smooth,
                                  names=[p.name for p in paths])
    make_folder(out_dir)
    outputs = [out_dir / m.path.name for m in meshes]
    named = [(m.path.name, t) for m, t in zip(meshes, transforms)]
    with all_or_nothing(*outputs, out_dir / TRANSFORMS_CSV):  # a failure (full disk) leaves no part of the set
        for mesh, transform, output in zip(meshes, transforms, outputs):
            write_mesh(output, mesh, transform.apply(mesh.vertices))
        _write_csv(out_dir / TRANSFORMS_CSV, named)
    return named


def _write_csv(path: Path, rows: list[tuple[str, RigidTransform]]) -> None:
    """One row per mesh: aligned = R @ v + t (v a column vector), in the meshes' own units."""
    with atomic_output(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for name, t in rows:
            writer.writerow([name, *(f"{v:.9f}" for v in t.rotation.ravel()), *(f"{v:.6f}" for v in t.translation),
                             t.iterations, f"{t.residual_mm:.6f}"])
