"""face-alignment's FAN on tiny networks shaped like the released ones (tiny_models.py).

These check loading (TorchScript archives, and state dicts loaded without running pickled code),
face-alignment's crop and heatmap decoding, and the output format; the accuracy of the real
2D/3D-FAN-4 is not measured (no real weights here).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facecli import backends, formats
from facecli.backends import models
from facecli.errors import BackendUnavailable
from facecli.facemodel import IBUG68_FROM_MESH
from facecli.media import read_image

from ..conftest import ASTRONAUT
from . import tiny_models

torch = pytest.importorskip("torch")
pytest.importorskip("face_alignment")

ROI = np.array([130.0, 30.0, 200.0, 200.0])


def test_fan_points_land_where_face_alignment_maps_the_heatmap_peaks(fan_weights: Path) -> None:
    from face_alignment.utils import transform_np

    model = backends.create("landmarks", "fan")
    assert model.settings() == {"weights": ["2DFAN4_1.6-c827573f02.zip"]}
    mesh = model.open_session(video=False).fit(read_image(ASTRONAUT), ROI)
    assert mesh.shape == (478, 3)
    centre, scale = ROI[:2] + ROI[2] / 2, ROI[2] / 200
    # face-alignment's own inverse transform (it rounds to whole px): a peak at column c reads c + 0.5.
    peaks = tiny_models.FAN_PEAKS.astype(float)
    theirs = np.array([transform_np(peak + 0.5, centre, scale, 64, True) for peak in peaks])
    assert np.abs(mesh[IBUG68_FROM_MESH, :2] - theirs).max() <= 1.0
    np.testing.assert_allclose(mesh[IBUG68_FROM_MESH, :2], ((tiny_models.FAN_PEAKS + 0.5) / 64 - 0.5) * 200 + centre)


def test_fan3d_adds_the_depth_networks_depth(fan_weights: Path) -> None:
    mesh = backends.create("landmarks", "fan3d").open_session(video=False).fit(read_image(ASTRONAUT), ROI)
    depth = mesh[IBUG68_FROM_MESH, 2]
    said = tiny_models.FAN_DEPTH * ROI[2] / 256  # crop units to image px, as face-alignment scales them
    assert abs(np.corrcoef(depth, said)[0, 1]) > 0.999
    np.testing.assert_allclose(np.ptp(depth), np.ptp(said), rtol=1e-6)


def test_state_dicts_load_into_face_alignments_own_network(model_dir: Path) -> None:
    path = tiny_models.fan_state_dict(models.pack_dir("fan") / models.FAN_2D.name)
    model = backends.create("landmarks", "fan")
    assert model.nets[0].num_modules == 1, "the stack depth read from the file"
    result = model.open_session(video=False).fit(read_image(ASTRONAUT), ROI)
    assert result is None or result.shape == (478, 3), "random weights: most likely no face-shaped output"
    assert path.stat().st_size > 0


class _Payload:
    """What a booby-trapped checkpoint would run on unpickling: here, touch a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_in_a_weights_file_is_refused_not_run(model_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = models.pack_dir("fan") / models.FAN_2D.name
    path.parent.mkdir(parents=True)
    torch.save({"m0.weight": _Payload(marker)}, str(path))
    with pytest.raises(BackendUnavailable, match=r"cannot load 2DFAN4-11f355bf06.pth.tar \(UnpicklingError") as err:
        backends.create("landmarks", "fan")
    assert "\n" not in str(err.value) and "facecli models download fan" in str(err.value)
    assert not marker.exists()


def test_fan3d_needs_its_depth_network(fan_weights: Path) -> None:
    (models.pack_dir("fan3d") / models.FAN_DEPTH.names[1]).unlink()
    assert backends.describe()  # doctor still lists everything
    with pytest.raises(BackendUnavailable, match=r"missing depth-2a464da4ea.pth.tar in .* models download fan3d"):
        models.require("landmarks", "fan3d")


def test_landmarks_cli_with_fan(fan_weights: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "facecli", "landmarks", str(ASTRONAUT), "--backend", "fan",
                             "-o", str(tmp_path), "-q"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    marks = formats.read_table(tmp_path / "astronaut.landmarks.parquet")
    assert len(marks) == 1 and marks.header["backend"] == "fan"
    assert marks.landmarks_68.shape == (1, 68, 2) and np.isfinite(marks.landmarks_478).all()
