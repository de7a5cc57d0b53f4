"""``facecli reenact`` from the shell: a folder of sources, a landmarks file as the driver, jobs."""

from __future__ import annotations

import json
import shutil

import numpy as np

from facecli import media
from facecli.formats import read_table
from tests.cli.test_cli import run
from tests.conftest import ASTRONAUT, GRACE_HOPPER, MEGAMIND


def test_folder_of_sources_driven_by_a_landmarks_file(tmp_path):
    driver = tmp_path / "driver"
    assert run("landmarks", str(MEGAMIND), "-o", str(driver), "--smooth", "-q").returncode == 0
    sources = tmp_path / "sources"
    sources.mkdir()
    shutil.copy(ASTRONAUT, sources)
    shutil.copy(GRACE_HOPPER, sources)
    media.write_image(sources / "wall.png", np.full((96, 96, 3), 90, np.uint8))
    result = run("reenact", str(sources), str(driver / "Megamind.landmarks.parquet"), "-o", str(tmp_path / "out"),
                 "--parts", "mouth,eyes", "--crop", "--size", "256", "--livelink", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1 and (report["done"], report["failed"]) == (2, 1)
    assert "wall.png" in [f for f in report["files"] if f["status"] == "failed"][0]["reason"]
    motion = read_table(tmp_path / "out" / "astronaut_Megamind.landmarks.motion.parquet")
    assert len(motion) == 270 and np.abs(motion.head_pose_deg).max() == 0  # no pose in --parts
    assert media.probe(tmp_path / "out" / "grace_hopper_Megamind.landmarks.mp4").width == 256
    assert (tmp_path / "out" / "astronaut_Megamind.landmarks.livelink.csv").exists()


def test_jobs_and_usage_errors(tmp_path):
    shutil.copy(ASTRONAUT, tmp_path / "a.png")
    shutil.copy(MEGAMIND, tmp_path / "d.avi")
    (tmp_path / "jobs.csv").write_text("source,driving,output\na.png,d.avi,out/a.mp4\n")
    result = run("reenact", "--jobs", str(tmp_path / "jobs.csv"), "--crop", "--size", "128", "-q")
    assert result.returncode == 0, result.stderr
    assert media.probe(tmp_path / "out" / "a.mp4").width == 128
    bad_parts = run("reenact", str(ASTRONAUT), str(MEGAMIND), "--parts", "mouth,nose")
    assert bad_parts.returncode == 2 and "--parts" in bad_parts.stderr


def test_an_output_may_not_overwrite_an_input(tmp_path):
    driving = tmp_path / "d.mp4"
    shutil.copy(MEGAMIND, driving)  # ffmpeg reads the content, whatever the suffix
    result = run("reenact", str(ASTRONAUT), str(driving), "-o", str(driving))
    assert result.returncode == 2 and "write over the input" in result.stderr
    assert driving.read_bytes() == MEGAMIND.read_bytes()
