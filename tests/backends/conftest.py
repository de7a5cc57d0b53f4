"""Model folders of tiny stand-in weights (tiny_models.py), in force through $FACECLI_MODELS."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from facecli.backends import models

from . import tiny_models


@pytest.fixture()
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model folder, in force for this test (and the processes it starts)."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv(models.ENV_VAR, str(folder))
    return folder


@pytest.fixture()
def buffalo_l(model_dir: Path) -> Path:
    pytest.importorskip("insightface")
    pytest.importorskip("onnx")
    tiny_models.buffalo_l(model_dir)
    return model_dir


@pytest.fixture()
def fan_weights(model_dir: Path) -> Path:
    """face-alignment 1.4's TorchScript names: the archives tiny_models writes."""
    pytest.importorskip("face_alignment")
    folder = model_dir / models.PACKS["fan"].folder
    tiny_models.fan_torchscript(folder / models.FAN_2D.names[1])
    tiny_models.fan_torchscript(folder / models.FAN_3D.names[1])
    tiny_models.depth_torchscript(folder / models.FAN_DEPTH.names[1])
    return model_dir


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``facecli ARGS`` in this process (fast, and monkeypatches apply): exit code, stdout, stderr."""
    from facecli.cli import main

    monkeypatch.setattr(sys, "argv", ["facecli", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err
