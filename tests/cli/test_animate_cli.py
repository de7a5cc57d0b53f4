"""``facecli animate`` from the shell: one portrait, folders, a jobs file, resume, bad input."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np

from facecli import media
from facecli.formats import read_table
from tests.cli.test_cli import run
from tests.conftest import ASTRONAUT, CLIPS, GRACE_HOPPER, write_wav

SPEECH, TEXT = CLIPS["0880"]


def test_one_portrait_to_a_video_with_exchange_files(tmp_path):
    out = tmp_path / "talk.mp4"
    result = run("animate", str(ASTRONAUT), str(SPEECH), "-o", str(out), "--transcript", TEXT, "--livelink",
                 "--cues", str(tmp_path / "talk.tsv"), "--size", "256", "--crop", "-q")
    assert result.returncode == 0, result.stderr
    info = media.probe(out)
    assert (info.width, info.height) == (256, 256) and info.has_audio
    motion = read_table(tmp_path / "talk.motion.parquet")
    assert motion.header["settings"]["transcript"] == TEXT and len(motion) == 75
    with (tmp_path / "talk.livelink.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 76 and len(rows[0]) == 63
    lines = (tmp_path / "talk.tsv").read_text().splitlines()
    assert lines[0].startswith("0.00\t") and lines[-1].endswith("\tX") and any(ln.endswith("\tA") for ln in lines)
    again = run("animate", str(ASTRONAUT), str(SPEECH), "-o", str(out), "--transcript", TEXT, "--livelink",
                "--cues", str(tmp_path / "talk.tsv"), "--size", "256", "--crop", "--json")
    assert json.loads(again.stdout)["skipped"] == 1  # resume: the same job is complete


def test_folder_of_portraits_one_bad(tmp_path):
    folder = tmp_path / "portraits"
    folder.mkdir()
    shutil.copy(ASTRONAUT, folder)
    shutil.copy(GRACE_HOPPER, folder)
    media.write_image(folder / "wall.png", np.full((128, 128, 3), 90, np.uint8))
    result = run("animate", str(folder), str(SPEECH), "-o", str(tmp_path / "out"), "--motion-only",
                 "--transcript", TEXT, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert (report["done"], report["failed"]) == (2, 1)
    failed = [f for f in report["files"] if f["status"] == "failed"][0]
    assert "wall.png" in failed["reason"] and "no face" in failed["reason"]
    made = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert made == ["astronaut_sense_and_sensibility_01_austen_64kb-0880.motion.parquet",
                    "grace_hopper_sense_and_sensibility_01_austen_64kb-0880.motion.parquet"]


def test_jobs_file(tmp_path):
    shutil.copy(ASTRONAUT, tmp_path / "a.png")
    shutil.copy(SPEECH, tmp_path / "s.wav")
    (tmp_path / "jobs.csv").write_text(f"portrait,audio,output,transcript\na.png,s.wav,out/one.mp4,{TEXT}\n"
                                       "a.png,s.wav,out/two.mp4,\n")
    result = run("animate", "--jobs", str(tmp_path / "jobs.csv"), "--motion-only", "--head-motion", "0", "-q")
    assert result.returncode == 0, result.stderr
    one, two = (read_table(tmp_path / "out" / f"{n}.motion.parquet") for n in ("one", "two"))
    assert one.header["settings"]["transcript"] == TEXT and two.header["settings"]["transcript"] is None
    assert np.abs(one.head_pose_deg).max() == 0


def test_usage_and_input_errors_are_one_line(tmp_path):
    assert run("animate", str(ASTRONAUT)).returncode == 2
    bad_size = run("animate", str(ASTRONAUT), str(SPEECH), "--crop", "--size", "255")
    assert bad_size.returncode == 2 and "even" in bad_size.stderr
    unreadable = tmp_path / "noise.mp3"
    unreadable.write_bytes(b"\x00\x01" * 999)
    result = run("animate", str(ASTRONAUT), str(unreadable), "-o", str(tmp_path / "x.mp4"), "-q")
    assert result.returncode == 1 and "noise.mp3" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()
    two_to_one = run("animate", str(ASTRONAUT), str(GRACE_HOPPER), str(SPEECH), "-o", str(tmp_path / "y.mp4"))
    assert two_to_one.returncode == 2 and "folder" in two_to_one.stderr
    for option in ("--transcript-file", "--jobs"):  # a named file that is missing is a bad input
        missing = run("animate", *([] if option == "--jobs" else [str(ASTRONAUT), str(SPEECH)]), option,
                      str(tmp_path / "nope.txt"))
        assert missing.returncode == 1 and missing.stderr.count("\n") == 1
        assert f"{tmp_path / 'nope.txt'}: cannot read the" in missing.stderr and "Errno" not in missing.stderr


def test_a_failed_job_leaves_no_outputs_and_a_changed_audio_is_redone(tmp_path):
    out = tmp_path / "talk.mp4"
    failed = run("animate", str(ASTRONAUT), str(SPEECH), "-o", str(out), "--transcript", TEXT, "--livelink",
                 "--cues", "/proc/facecli-cannot-write-here.json", "-q")
    assert failed.returncode == 1 and "facecli-cannot-write-here.json" in failed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no video, CSV or motion file left behind
    audio = tmp_path / "speech.wav"
    shutil.copy(SPEECH, audio)
    assert run("animate", str(ASTRONAUT), str(audio), "-o", str(out), "--motion-only", "-q").returncode == 0
    write_wav(audio, np.zeros(16000))  # the same path, other audio
    again = run("animate", str(ASTRONAUT), str(audio), "-o", str(out), "--motion-only", "--json")
    assert json.loads(again.stdout)["done"] == 1  # redone, not skipped


def test_jobs_csv_from_a_spreadsheet_and_misuse(tmp_path):
    shutil.copy(ASTRONAUT, tmp_path / "a.png")
    shutil.copy(SPEECH, tmp_path / "s.wav")
    (tmp_path / "jobs.csv").write_bytes("\ufeffportrait,audio,output\n\na.png,s.wav,o/x.mp4\n".encode())
    assert run("animate", "--jobs", str(tmp_path / "jobs.csv"), "--motion-only", "-q").returncode == 0
    assert (tmp_path / "o" / "x.motion.parquet").exists()
    (tmp_path / "bad.csv").write_text("portrait,audio,output\na.png,s.wav,o/y.mp4\na.png,s.wav\n")
    bad = run("animate", "--jobs", str(tmp_path / "bad.csv"), "--motion-only")
    assert bad.returncode == 2 and "line 3" in bad.stderr and not (tmp_path / "o" / "y.motion.parquet").exists()
    mixed = run("animate", str(ASTRONAUT), str(SPEECH), "--jobs", str(tmp_path / "jobs.csv"))
    assert mixed.returncode == 2 and "--jobs" in mixed.stderr
    over = run("animate", str(ASTRONAUT), str(SPEECH), "-o", str(tmp_path / "s.avi"))
    assert over.returncode == 2 and ".avi" in over.stderr


def test_silent_audio_animates_an_idle_portrait_with_a_warning(tmp_path):
    silence = write_wav(tmp_path / "silence.wav", np.zeros(16000))
    result = run("animate", str(ASTRONAUT), str(silence), "-o", str(tmp_path / "idle.mp4"), "--size", "128",
                 "--crop", "--json")
    [done] = json.loads(result.stdout)["files"]
    assert done["status"] == "done" and "no speech" in done["summary"]["warning"]
    assert [line for line in result.stderr.splitlines() if line.startswith("warning:")] == \
        [f"warning: {silence}: {done['summary']['warning']}"]


def test_size_without_crop_is_a_usage_error(tmp_path):
    result = run("animate", str(ASTRONAUT), str(SPEECH), "-o", str(tmp_path / "x.mp4"), "--size", "256")
    assert result.returncode == 2 and "--size only acts with --crop" in result.stderr
