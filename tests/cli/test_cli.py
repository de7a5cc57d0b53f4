"""The command line as a user meets it: real console script, real files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..conftest import ASTRONAUT, GRACE_HOPPER as HOPPER, MEGAMIND, interruptible

FACECLI = [sys.executable, "-m", "facecli"]


def run(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*FACECLI, *args], capture_output=True, text=True, input=stdin, cwd=cwd, timeout=300)


@pytest.fixture()
def bad_batch(tmp_path: Path) -> dict[str, Path]:
    files = {"good": tmp_path / "astronaut.png"}
    shutil.copy(ASTRONAUT, files["good"])
    files["empty"] = tmp_path / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["text"] = tmp_path / "notes.mp4"
    files["text"].write_text("this is not a video\n" * 20)
    files["truncated"] = tmp_path / "truncated.avi"
    data = MEGAMIND.read_bytes()
    files["truncated"].write_bytes(data[: int(len(data) * 0.4)])
    files["no_face"] = tmp_path / "wall.png"
    gradient = np.tile(np.linspace(40, 200, 320, dtype=np.uint8), (240, 1))
    Image.fromarray(np.dstack([gradient] * 3)).save(files["no_face"])
    files["missing"] = tmp_path / "missing.mp4"
    return files


def test_bad_inputs_fail_one_line_each_and_the_good_file_is_written(bad_batch, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("landmarks", *map(str, bad_batch.values()), "-o", str(out), "--report", str(tmp_path / "r.json"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    failed_lines = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    for name in ("empty", "text", "truncated", "no_face", "missing"):
        lines = [line for line in failed_lines if bad_batch[name].name in line]
        assert len(lines) == 1, f"{name}: {failed_lines}"
    assert (out / "astronaut.landmarks.parquet").exists()
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.landmarks.parquet"], "no partial outputs"
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["done"], report["failed"]) == (1, 5)
    reasons = {Path(f["input"]).name: f["reason"] for f in report["files"]}
    assert "no face" in reasons["wall.png"] and "truncated" in reasons["truncated.avi"]
    assert "empty" in reasons["empty.mp4"] and "not found" in reasons["missing.mp4"]


def test_resume_skips_complete_outputs_and_overwrite_redoes_them(tmp_path: Path) -> None:
    args = ("detect", str(ASTRONAUT), "-o", str(tmp_path), "--json")
    first = json.loads(run(*args).stdout)
    second = json.loads(run(*args).stdout)
    third = json.loads(run(*args, "--overwrite").stdout)
    changed = json.loads(run(*args, "--min-score", "0.6").stdout)
    assert (first["done"], second["skipped"], third["done"], changed["done"]) == (1, 1, 1, 1)
    mode = (tmp_path / "astronaut.faces.parquet").stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask(), "outputs get the usual permissions, not mkstemp's 0600"


def test_resume_writes_a_preview_asked_for_later(tmp_path: Path) -> None:
    args = ("detect", str(ASTRONAUT), "-o", str(tmp_path), "--json")
    assert json.loads(run(*args).stdout)["done"] == 1
    preview = tmp_path / "p.png"
    assert json.loads(run(*args, "--preview", str(preview)).stdout)["done"] == 1, "not skipped: no preview yet"
    assert preview.exists()
    assert json.loads(run(*args, "--preview", str(preview)).stdout)["skipped"] == 1


def test_a_csv_cut_at_a_row_end_is_neither_complete_nor_read(tmp_path: Path) -> None:
    args = ("detect", str(MEGAMIND), "-o", str(tmp_path), "--format", "csv", "--json", "--every", "10")
    assert json.loads(run(*args).stdout)["done"] == 1
    table = tmp_path / "Megamind.faces.csv"
    lines = table.read_text().splitlines(keepends=True)
    table.write_text("".join(lines[:len(lines) // 2]))  # still parses: every row whole
    result = run("landmarks", str(table), "-o", str(tmp_path / "marks"), "--json")
    [failed] = json.loads(result.stdout)["files"]
    assert failed["status"] == "failed" and "cut short" in failed["reason"]
    assert json.loads(run(*args).stdout)["done"] == 1, "resume redoes it"
    assert table.read_text().splitlines(keepends=True) == lines


def test_config_values_that_are_not_option_values_are_usage_errors(tmp_path: Path) -> None:
    for name, text in (("null.yaml", "min-score: null\n"), ("bool.yaml", "min-score: true\n"),
                       ("binary.yaml", b"\xff\xfe\x00bad")):
        config = tmp_path / name
        config.write_bytes(text if isinstance(text, bytes) else text.encode())
        result = run("detect", str(ASTRONAUT), "-o", str(tmp_path), "--config", str(config))
        assert result.returncode == 2, (name, result.stderr)
        [line] = result.stderr.splitlines()
        assert line.startswith(f"error: {config}") and "internal" not in line


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_ctrl_c_stops_the_batch_and_leaves_only_complete_files(tmp_path: Path) -> None:
    import os
    import signal
    import time

    out = tmp_path / "out"
    # --scan-every 1: a full scan of every frame keeps each video busy for seconds
    proc = interruptible([*FACECLI, "detect", str(MEGAMIND), str(MEGAMIND), "-o", str(out), "-q", "--scan-every", "1"])
    deadline = time.monotonic() + 60
    # wait until the first video is being written
    while not (writing := bool(list(out.glob(".*.part.parquet")))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writing, "the first video was being written"
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole foreground group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_folder_of_faces_files_chains_into_landmarks(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(ASTRONAUT, images / "a.png")
    (images / "settings.yaml").write_text("not media: true\n")  # a folder scan skips it
    Image.open(ASTRONAUT).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(images / "b.jpg")
    assert run("detect", str(images), "-o", str(tmp_path / "faces"), "-q").returncode == 0
    result = run("landmarks", str(tmp_path / "faces"), "-o", str(tmp_path / "marks"), "--format", "csv", "--json")
    summary = json.loads(result.stdout)
    assert summary["done"] == 2
    assert sorted(p.name for p in (tmp_path / "marks").glob("*.csv")) == ["a.landmarks.csv", "b.landmarks.csv"]


def test_paths_from_stdin_and_config_file(tmp_path: Path) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text("min-score: 0.99\nmax_faces: 1\n")
    result = run("detect", "-", "-o", str(tmp_path), "--config", str(config), "--json", stdin=f"{ASTRONAUT}\n")
    assert json.loads(result.stdout)["failed"] == 1, "min-score 0.99 from the config finds no face"
    result = run("detect", "-", "-o", str(tmp_path), "--config", str(config), "--min-score", "0.5", "--json",
                 stdin=f"{ASTRONAUT}\n")
    assert json.loads(result.stdout)["done"] == 1, "the command line wins over the config"


def test_preview_files(tmp_path: Path) -> None:
    png = tmp_path / "preview.png"
    assert run("landmarks", str(ASTRONAUT), "-o", str(tmp_path), "--preview", str(png), "-q").returncode == 0
    drawn, original = np.asarray(Image.open(png)), np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    changed = np.argwhere(np.abs(drawn.astype(int) - original).sum(axis=2) > 60)
    centre = changed.mean(axis=0)
    assert 60 < centre[0] < 220 and 150 < centre[1] < 300, "the drawing is on the face"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("detect", str(ASTRONAUT), "--every", "0").returncode == 2
    result = run("detect", str(ASTRONAUT), "--backend", "nope", "-o", str(tmp_path))
    assert result.returncode == 2 and "mediapipe" in result.stderr and "fake" not in result.stderr
    for preview, inputs in (("p.jpg", [ASTRONAUT]), ("p.png", [ASTRONAUT, MEGAMIND])):
        result = run("detect", *map(str, inputs), "-o", str(tmp_path), "--preview", str(tmp_path / preview))
        assert result.returncode == 2 and not (tmp_path / preview).exists(), "no folder named like a file"
    dotted = tmp_path / "previews.v2"  # a folder name with a dot is still a folder
    result = run("detect", str(ASTRONAUT), str(HOPPER), "-o", str(tmp_path), "--preview", str(dotted), "-q")
    assert result.returncode == 0
    assert sorted(p.name for p in dotted.iterdir()) == ["astronaut.faces.preview.png",
                                                        "grace_hopper.faces.preview.png"]
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("no_such_option: 1\n")
    result = run("detect", str(ASTRONAUT), "--config", str(bad_config))
    assert result.returncode == 2 and "no_such_option" in result.stderr and "Traceback" not in result.stderr


def test_doctor_lists_backends() -> None:
    result = run("doctor")
    assert result.returncode == 0
    assert "detect" in result.stderr and "mediapipe" in result.stderr and "ffmpeg" in result.stderr


@pytest.mark.parametrize("ffmpeg", ["/nonexistent/ffmpeg", "/bin/false"])
def test_a_broken_ffmpeg_is_named_by_doctor_and_by_each_video(tmp_path: Path, ffmpeg: str) -> None:
    import os

    env = {**os.environ, "IMAGEIO_FFMPEG_EXE": ffmpeg}
    doctor = subprocess.run([*FACECLI, "doctor"], capture_output=True, text=True, env=env, timeout=300)
    assert doctor.returncode == 1 and "ffmpeg: unusable" in doctor.stderr and ffmpeg in doctor.stderr
    result = subprocess.run([*FACECLI, "detect", str(MEGAMIND), "-o", str(tmp_path), "-q"], capture_output=True,
                            text=True, env=env, timeout=300)
    [line] = result.stderr.splitlines()
    assert result.returncode == 1 and ffmpeg in line and ("doctor" in line or "IMAGEIO_FFMPEG_EXE" in line)


def test_an_unwritable_report_stops_the_batch_before_it_starts(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("detect", str(ASTRONAUT), "-o", str(tmp_path / "out"), "--report", str(blocker / "r.json"))
    [line] = result.stderr.splitlines()
    assert result.returncode == 1 and line.startswith(f"error: {blocker / 'r.json'}: cannot write the report")
    assert not list((tmp_path / "out").glob("*")), "no file was processed"


def test_unwritable_output_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("detect", str(ASTRONAUT), "-o", str(blocker / "sub"))
    assert result.returncode == 1 and "Traceback" not in result.stderr  # a bad output, not a usage error
    assert result.stderr.strip().splitlines() == [f"error: {blocker / 'sub'}: cannot create output folder "
                                                   "(Not a directory); choose another -o"]


def test_two_inputs_never_write_one_output(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(ASTRONAUT, tmp_path / folder / "face.png")
    result = run("detect", str(tmp_path / "a" / "face.png"), str(tmp_path / "b" / "face.png"), "-o", str(tmp_path))
    assert result.returncode == 2 and "would both write" in result.stderr
    assert not list(tmp_path.glob("*.parquet"))


def test_names_with_markup_characters_are_shown_as_they_are(tmp_path: Path) -> None:
    (tmp_path / "take[").mkdir()
    odd = tmp_path / "take[" / "bad] [draft].png"  # the path reads "take[/bad] [draft].png": a closing tag
    odd.write_text("not an image")
    result = run("detect", str(odd), "-o", str(tmp_path / "out"), "--report", str(tmp_path / "r.json"))
    assert result.returncode == 1 and "internal error" not in result.stderr
    assert "take[/bad] [draft].png: not an image" in result.stderr and (tmp_path / "r.json").exists()


def test_landmarks_refuse_a_faces_file_whose_media_changed(tmp_path: Path) -> None:
    image = tmp_path / "img.png"
    shutil.copy(ASTRONAUT, image)
    assert run("detect", str(image), "-q").returncode == 0
    Image.open(ASTRONAUT).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image)
    result = run("landmarks", str(tmp_path / "img.faces.parquet"), "-q")
    assert result.returncode == 1 and "changed since detect" in result.stderr


def test_a_redone_faces_file_redoes_its_landmarks(tmp_path: Path) -> None:
    image = tmp_path / "img.png"
    shutil.copy(ASTRONAUT, image)
    run("detect", str(image), "-q")
    first = json.loads(run("landmarks", str(tmp_path / "img.faces.parquet"), "--json").stdout)
    run("detect", str(image), "-q", "--min-score", "0.6")
    second = json.loads(run("landmarks", str(tmp_path / "img.faces.parquet"), "--json").stdout)
    assert (first["done"], second["done"]) == (1, 1)


def test_video_preview_with_every_keeps_real_time(tmp_path: Path) -> None:
    from facecli.media import probe

    preview = tmp_path / "p.mp4"
    assert run("detect", str(MEGAMIND), "--every", "10", "-o", str(tmp_path), "--preview", str(preview),
               "-q").returncode == 0
    info = probe(preview)
    assert info.duration_s == pytest.approx(probe(MEGAMIND).duration_s, abs=0.5) and info.has_audio
    mismatch = run("detect", str(ASTRONAUT), "-o", str(tmp_path), "--preview", str(tmp_path / "x.mp4"))
    assert mismatch.returncode == 2 and "png" in mismatch.stderr


def test_bad_focal_is_a_usage_error() -> None:
    assert run("landmarks", str(ASTRONAUT), "--focal", "-500").returncode == 2
