"""The model folder, the one-line errors for missing weights, and `facecli models` (no network)."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest

from facecli.backends import models
from facecli.errors import BackendUnavailable, FacecliError, UsageError

from .conftest import run_cli


def test_the_model_folder_comes_from_the_variable_else_the_default(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.delenv(models.ENV_VAR, raising=False)
    assert models.model_dir() == Path("~/.cache/facecli/models").expanduser()
    monkeypatch.setenv(models.ENV_VAR, str(tmp_path))
    assert models.model_dir() == tmp_path
    models.use_model_dir(tmp_path / "other")  # what --model-dir does: spawned workers inherit it
    assert os.environ[models.ENV_VAR] == str(tmp_path / "other") and models.model_dir() == tmp_path / "other"
    assert models.pack_dir("buffalo_l") == tmp_path / "other" / "insightface" / "models" / "buffalo_l"


def test_a_missing_file_is_named_with_where_facecli_looked_and_the_command(model_dir: Path) -> None:
    pytest.importorskip("insightface")
    reason = models.problem("buffalo_l", models.INSIGHTFACE_DETECTOR)
    folder = model_dir / "insightface" / "models" / "buffalo_l"
    assert reason == (f"missing det_10g.onnx in {folder}; get it with: "
                      f"facecli models download buffalo_l --model-dir {model_dir}")
    assert "\n" not in reason


def test_a_missing_package_names_the_extra(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = models.importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda n: None if n == "face_alignment" else real(n))
    assert models.problem("fan", models.FAN_2D) == \
        "the face_alignment package is not installed; pip install 'facecli[fan]'"
    with pytest.raises(BackendUnavailable, match=r"pip install 'facecli\[fan\]'"):
        models.require("landmarks", "fan")


def test_older_face_alignment_file_names_are_accepted(model_dir: Path) -> None:
    folder = model_dir / "fan" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "2DFAN4-cd938726ad.zip").write_bytes(b"x")
    assert models.locate("fan", models.FAN_2D) == folder / "2DFAN4-cd938726ad.zip"
    (folder / "2DFAN4-11f355bf06.pth.tar").write_bytes(b"x")
    assert models.locate("fan", models.FAN_2D) == folder / "2DFAN4-11f355bf06.pth.tar", "the current name first"


def test_models_list_shows_found_files_and_checks_hashes_in_names(model_dir: Path, monkeypatch, capsys) -> None:
    folder = model_dir / "fan" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "2DFAN4-11f355bf06.pth.tar").write_bytes(b"not the real weights")
    rows = {row.weights.name: row for row in models.status()}
    assert rows["2DFAN4-11f355bf06.pth.tar"].path == folder / "2DFAN4-11f355bf06.pth.tar"
    assert rows["2DFAN4-11f355bf06.pth.tar"].checksum == \
        f"sha256 {hashlib.sha256(b'not the real weights').hexdigest()} (DOES NOT match the published one)"
    assert rows["det_10g.onnx"].path is None
    (folder / "2DFAN4-c827573f02.pth.tar").write_bytes(b"x")  # no published sha256: its name's prefix is checked
    assert models._checksum(folder / "2DFAN4-c827573f02.pth.tar").endswith("(DOES NOT match its name)")
    monkeypatch.setitem(models.PUBLISHED_SHA256, "2DFAN4-11f355bf06.pth.tar",
                        hashlib.sha256(b"not the real weights").hexdigest())
    assert models._checksum(folder / "2DFAN4-11f355bf06.pth.tar").endswith("(matches the published one)")
    code, out, err = run_cli(monkeypatch, capsys, "models", "list")
    assert code == 0 and "missing" in err and str(model_dir) in err


def test_download_refuses_unknown_names(model_dir: Path) -> None:
    with pytest.raises(UsageError, match="buffalo_l, fan, fan3d"):
        models.download("buffalo_m")


def _fake_buffalo_zip(url: str, path: str, overwrite: bool = False) -> str:
    """insightface's network fetch, replaced: the pack as a zip of three placeholder files."""
    assert url.endswith("/buffalo_l.zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("det_10g.onnx", "1k3d68.onnx", "w600k_r50.onnx", "2d106det.onnx", "genderage.onnx"):
            archive.writestr(name, b"placeholder")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(buffer.getvalue())
    return path


def test_download_uses_insightfaces_downloader_and_says_where(model_dir: Path, monkeypatch, capsys,
                                                              tmp_path: Path) -> None:
    storage = pytest.importorskip("insightface.utils.storage")
    monkeypatch.setattr(storage, "download_file", _fake_buffalo_zip)
    for name in ("det_10g.onnx", "1k3d68.onnx", "2d106det.onnx", "w600k_r50.onnx"):  # the placeholders pass
        monkeypatch.setitem(models.PUBLISHED_SHA256, name, hashlib.sha256(b"placeholder").hexdigest())
    other = tmp_path / "elsewhere"
    code, out, err = run_cli(monkeypatch, capsys, "models", "download", "buffalo_l", "--model-dir", str(other))
    folder = other / "insightface" / "models" / "buffalo_l"
    assert code == 0 and out.strip() == f"buffalo_l: {folder}"
    assert (folder / "det_10g.onnx").read_bytes() == b"placeholder"


def test_a_download_that_is_not_the_published_files_fails_in_one_line(model_dir: Path, monkeypatch) -> None:
    storage = pytest.importorskip("insightface.utils.storage")
    monkeypatch.setattr(storage, "download_file", _fake_buffalo_zip)
    monkeypatch.setitem(models.PUBLISHED_SHA256, "det_10g.onnx", hashlib.sha256(b"placeholder").hexdigest())
    with pytest.raises(FacecliError) as error:
        models.download("buffalo_l")
    message = str(error.value)
    assert "1k3d68.onnx, 2d106det.onnx, w600k_r50.onnx in the buffalo_l download does not match its published" \
        in message and "det_10g" not in message and "\n" not in message


def test_download_uses_face_alignments_downloader(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    utils = pytest.importorskip("face_alignment.utils")
    fetched = []

    def fake_fetch(url: str, dst: str, hash_prefix=None, progress=True) -> None:
        fetched.append(url)
        Path(dst).write_bytes(b"placeholder")

    monkeypatch.setattr(utils, "download_url_to_file", fake_fetch)
    monkeypatch.setattr(models, "_agrees", lambda path, sha256: True)  # placeholders (the check: test above)
    folder = models.download("fan3d")
    assert folder == model_dir / "fan" / "checkpoints" and len(fetched) == 2
    assert models.locate("fan3d", models.FAN_3D) and models.locate("fan3d", models.FAN_DEPTH)


def test_offline_download_fails_in_one_line(model_dir: Path, monkeypatch, capsys) -> None:
    storage = pytest.importorskip("insightface.utils.storage")

    def offline(url: str, path: str, overwrite: bool = False) -> str:
        raise ConnectionError(f"Failed to resolve host for {url}\n(no network)")

    monkeypatch.setattr(storage, "download_file", offline)
    with pytest.raises(FacecliError, match="could not download buffalo_l"):
        models.download("buffalo_l")
    code, out, err = run_cli(monkeypatch, capsys, "models", "download", "buffalo_l")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and out == "" and len(errors) == 1  # above it, insightface's own progress line
    assert "could not download buffalo_l (ConnectionError: Failed to resolve host" in errors[0]
    assert str(model_dir) in errors[0]


def test_doctor_lists_optional_backends_without_failing(model_dir: Path, monkeypatch, capsys) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "doctor")
    assert code == 0, err
    assert "optional" in err and "fan3d" in err and f"model folder: {model_dir}" in err
