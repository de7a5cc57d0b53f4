"""Mesh mode of ``stabilize`` as a library call: a failure leaves no part of the output set."""

from __future__ import annotations

import pytest

from facecli.errors import OutputError
from facecli.facemodel import mean_face
from facecli.stages import stabilize_meshes as mesh_stage
from tests.cli.test_stabilize_cli import write_obj


def test_a_failed_write_leaves_no_meshes_behind(tmp_path, monkeypatch):
    folder, out = tmp_path / "meshes", tmp_path / "out"
    folder.mkdir()
    for i in range(4):
        write_obj(folder / f"frame{i}.obj", mean_face().vertices_mm + [i, 0.0, 0.0])
    write = mesh_stage.write_mesh
    calls = []

    def disk_fills_on_the_third(path, mesh, vertices=None):
        calls.append(path.name)
        if len(calls) == 3:
            raise OutputError("cannot write the mesh (No space left on device); choose another -o folder", path)
        write(path, mesh, vertices)

    monkeypatch.setattr(mesh_stage, "write_mesh", disk_fills_on_the_third)
    with pytest.raises(OutputError, match="No space left"):
        mesh_stage.stabilize_mesh_folder(folder, out)
    assert len(calls) == 3 and list(out.iterdir()) == []  # the two meshes written before were removed
    monkeypatch.undo()
    mesh_stage.stabilize_mesh_folder(folder, out)
    assert sorted(p.name for p in out.iterdir()) == [f"frame{i}.obj" for i in range(4)] + ["transforms.csv"]
