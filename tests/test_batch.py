"""The batch spine, driven by the fake backend: no models, so these are fast."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecli.batch import expand_inputs, run_batch, run_job
from facecli.cli.common import FileFormat  # noqa: F401 - the CLI's names stay importable
from facecli.stages.detect import DetectOptions, detect_file
from facecli.atomic import atomic_output
from facecli.batch import Job


def _square_image(path: Path, x: int) -> Path:
    image = np.zeros((120, 160, 3), np.uint8)
    image[30:70, x : x + 40] = 255
    Image.fromarray(image).save(path)
    return path


def _jobs(sources: list[Path], out: Path) -> list[Job]:
    options = DetectOptions(backend="fake")
    return [Job(s, out / f"{s.stem}.faces.parquet", None, detect_file, options) for s in sources]


def test_parallel_workers_and_a_bad_file(tmp_path: Path) -> None:
    sources = [_square_image(tmp_path / f"img{i}.png", 10 + 10 * i) for i in range(4)]
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    summary = run_batch(_jobs([*sources, bad], tmp_path / "out"), workers=2)
    assert summary.count("done") == 4 and summary.count("failed") == 1 and summary.exit_code == 1
    failed = next(r for r in summary.results if r.status == "failed")
    assert "bad.png" in failed.reason and "\n" not in failed.reason
    again = run_batch(_jobs(sources, tmp_path / "out"), workers=2)
    assert again.count("skipped") == 4


def test_a_full_disk_is_named_and_a_bug_is_not_hidden(tmp_path: Path) -> None:
    def full_disk(*_args) -> None:  # what pyarrow raises when the disk fills
        raise OSError(errno.ENOSPC, "Error writing bytes to file")

    def bug(*_args) -> None:
        raise ValueError("an index out of range")

    source, output = tmp_path / "clip.mp4", tmp_path / "clip.faces.parquet"
    full = run_job(Job(source, output, None, full_disk, None))
    assert full.status == "failed" and "internal error" not in full.reason
    assert full.reason == f"{source}: cannot write {output} (No space left on device); free disk space or choose another -o"
    assert "internal error ValueError: an index out of range" in run_job(Job(source, output, None, bug, None)).reason


def test_a_changed_source_is_redone(tmp_path: Path) -> None:
    source = _square_image(tmp_path / "img.png", 10)
    assert run_batch(_jobs([source], tmp_path)).count("done") == 1
    _square_image(source, 60)
    assert run_batch(_jobs([source], tmp_path)).count("done") == 1, "same name, new content: not skipped"


def test_expand_inputs_folders_globs_and_stage_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".cache").mkdir()
    for name in ("a.mp4", "b.png", "sub/c.mp4", "notes.txt", ".hidden.mp4", "a.faces.parquet", ".cache/d.mp4"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in expand_inputs([str(tmp_path)])] == ["a.mp4", "b.png"]
    assert [p.name for p in expand_inputs([str(tmp_path)], recursive=True, glob="*.mp4")] == ["a.mp4", "c.mp4"]
    # a.mp4 is covered by its faces file; b.png has none and is processed from the image
    assert [p.name for p in expand_inputs([str(tmp_path)], accept_stage="faces")] == ["a.faces.parquet", "b.png"]
    spelled_twice = [str(tmp_path / "a.mp4"), str(tmp_path / "sub" / ".." / "a.mp4")]
    assert len(expand_inputs(spelled_twice)) == 1
    assert [p.name for p in expand_inputs([str(tmp_path / "missing.mp4")])] == ["missing.mp4"]


def test_workers_must_be_positive(tmp_path: Path) -> None:
    from facecli.errors import UsageError

    with pytest.raises(UsageError):
        run_batch([], workers=0)


def _crash_on_bad(source: Path, output: Path, options, preview, progress):
    """A stage that kills its own worker for files named 'crash*', like the OOM killer would."""
    import os
    import signal

    if source.name.startswith("crash"):
        with atomic_output(output):  # killed while writing: its temporary file stays behind
            os.kill(os.getpid(), signal.SIGKILL)
    return detect_file(source, output, options, preview, progress)


def test_a_dying_worker_fails_only_its_own_file(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    sources = [_square_image(tmp_path / f"img{i}.png", 10 + 10 * i) for i in range(4)]
    crash = _square_image(tmp_path / "crash.png", 50)
    options = DetectOptions(backend="fake")
    jobs = [Job(s, tmp_path / "out" / f"{s.stem}.faces.parquet", None, _crash_on_bad, options)
            for s in [sources[0], crash, *sources[1:]]]
    summary = run_batch(jobs, workers=2)
    status = {Path(r.input).name: r.status for r in summary.results}
    assert status == {"img0.png": "done", "crash.png": "failed", "img1.png": "done", "img2.png": "done",
                      "img3.png": "done"}
    assert "died" in next(r.reason for r in summary.results if r.status == "failed")
    assert not list((tmp_path / "out").glob(".*.part.parquet")), "the killed worker's temporary file is removed"
    assert "Traceback" not in capfd.readouterr().err, "the workers stopped with the broken pool leave quietly"


def test_remove_partials_takes_a_killed_writers_files_and_nothing_else(tmp_path: Path) -> None:
    from facecli.atomic import remove_partials

    final = tmp_path / "clip.stabilized.mp4"
    names = [".clip.stabilized.ab12.part.mp4", ".clip.stabilized.cd34.part.mp4.video.mp4",  # a killed writer's
             "clip.stabilized.mp4.txt", ".other.ab12.part.mp4", "clip.stabilize.parquet"]  # not its
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    remove_partials(final)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])
