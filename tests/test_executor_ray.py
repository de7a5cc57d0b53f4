"""--executor ray on a real two-node Ray cluster started here, and --chunk-seconds.

The cluster (a head and one worker node, one CPU each, no dashboard, no usage statistics, its
own temporary folder) is shared by the module and shut down even when a test fails. The test
that kills the worker node runs last.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from facecli import executors, formats, media
from facecli.batch import Job, run_batch, run_job
from facecli.chunks import check_chunkable, chunked
from facecli.errors import InputError, UsageError
from facecli.stages.detect import DetectOptions, detect_file
from facecli.stages.landmarks import LandmarkOptions, landmarks_file

from .conftest import ASTRONAUT, GRACE_HOPPER, MEGAMIND, ffmpeg, interruptible, sigint_default

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

FACECLI = [sys.executable, "-m", "facecli"]
DETECT = DetectOptions(min_size=120)  # fewer scan tiles: the example in 3 s instead of 25 s
MEGAMIND_CUTS = [0, 1, 98, 154, 200]  # frame 0 (black) opens a shot of its own
# Landmarks of tracks that start after the first part: measured on the example, up to 14% of
# the distance between the eyes on a track's first frame, 2-3% typical (docs/scaling.md).


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    saved = os.environ.get("RAY_USAGE_STATS_ENABLED")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    node = {"num_cpus": 1, "object_store_memory": 80 * 2**20, "temp_dir": temp}
    started = None
    try:
        with sigint_default():  # ray.cancel interrupts a running task with SIGINT
            started = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
            started.add_node(**node)
        ray.init(address=started.address, logging_level="ERROR", log_to_driver=False)
        # Test helpers travel by value: the workers cannot import this tests package.
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        yield started
    finally:
        ray.shutdown()
        if started is not None:
            started.shutdown()  # also removes the ray_current_cluster file it wrote
        shutil.rmtree(temp, ignore_errors=True)
        os.environ.pop("RAY_USAGE_STATS_ENABLED") if saved is None else os.environ.update(
            RAY_USAGE_STATS_ENABLED=saved)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FACECLI, *args], capture_output=True, text=True, timeout=300)


def batch(sources: list[Path], out: Path, run, options) -> list[Job]:
    stage = "faces" if run is detect_file else "landmarks"
    return [Job(s, formats.output_path(s, out, stage, "parquet"), None, run, options) for s in sources]


def assert_same_table(a: Path, b: Path) -> None:
    ta, tb = formats.read_table(a), formats.read_table(b)
    assert len(ta) == len(tb), a.name
    for name in type(ta).SHAPES:
        assert np.array_equal(getattr(ta, name), getattr(tb, name)), f"{a.name}: {name}"
    ha, hb = formats.read_header(a), formats.read_header(b)
    assert ha == hb, "the header, settings and counts included"


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Path]:
    """Two images (faces of 140 and 190 px, over DETECT's smallest) and the example video."""
    from PIL import Image

    big = tmp_path_factory.mktemp("images") / "astronaut_big.png"
    with Image.open(ASTRONAUT) as image:
        image.resize((image.width * 3 // 2, image.height * 3 // 2)).save(big)
    return [big, GRACE_HOPPER, MEGAMIND]


@pytest.fixture(scope="module")
def local_outputs(tmp_path_factory, sources: list[Path]) -> Path:
    """detect and landmarks of the sources, by the local executor."""
    out = tmp_path_factory.mktemp("local")
    for run, options in ((detect_file, DETECT), (landmarks_file, LandmarkOptions())):
        summary = run_batch(batch(sources, out, run, options))
        assert summary.count("done") == 3, summary.results
    return out


# --------------------------------------------------------------------------- no cluster needed


def test_a_segment_decodes_the_same_frames_as_the_whole_file(tmp_path: Path) -> None:
    bframes = tmp_path / "bframes.mp4"  # H.264 with B-frames and a keyframe every 30 frames
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=25", "-t", "6", "-c:v", "libx264", "-g", "30", "-bf", "3",
           "-pix_fmt", "yuv420p", str(bframes))
    for path, start, stop in ((MEGAMIND, 119, 130), (MEGAMIND, 200, None), (bframes, 77, 97), (bframes, 1, 5)):
        whole = list(media.iter_frames(path))[start:stop]
        with media.only_frames(path, start, stop):
            part = list(media.iter_frames(path))
        assert [(f.index, f.timestamp_s) for f in part] == [(f.index, f.timestamp_s) for f in whole]
        assert all(np.array_equal(a.image, b.image) for a, b in zip(part, whole)), f"{path.name} from {start}"


def test_a_segment_of_uneven_frames_is_refused(tmp_path: Path) -> None:
    uneven = tmp_path / "vfr.mkv"  # frames at 0, 0.1, 0.3, 0.6 ... s
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=10", "-t", "3", "-vf", "setpts='N*N/20/TB'",
           "-fps_mode", "passthrough", "-c:v", "libx264", str(uneven))
    with media.only_frames(uneven, 10), pytest.raises(InputError, match="not evenly spaced"):
        list(media.iter_frames(uneven))


class InProcess:
    """A chunks.Mapper that runs every item here, one after the other."""

    def map(self, fn, items):
        return [fn(item, None) for item in items]


def test_chunk_merge_is_exact_in_process(tmp_path: Path) -> None:
    """The parts and their merge are exact by construction, and a reused mesh session starts
    clean (landmarks' _SessionPool), so chunked and whole runs agree to the bit."""
    whole = Job(MEGAMIND, tmp_path / "whole.landmarks.parquet", None, landmarks_file, LandmarkOptions())
    parts = chunked(replace(whole, output=tmp_path / "parts.landmarks.parquet"), 2.0, InProcess())
    assert run_job(whole).status == run_job(parts).status == "done"
    assert_same_table(whole.output, parts.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts.landmarks.parquet", "whole.landmarks.parquet"]


def test_ray_missing_is_one_line_and_exit_2() -> None:
    code = ("import sys; sys.modules['ray'] = None; from facecli.cli import main; "
            f"sys.argv = ['facecli', 'detect', {str(ASTRONAUT)!r}, '--executor', 'ray']; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["error: " + executors.RAY_MISSING]
    assert "pip install 'facecli[ray]'" in executors.RAY_MISSING


def test_options_that_cannot_apply_are_usage_errors(tmp_path: Path) -> None:
    local = cli("detect", str(ASTRONAUT), "-o", str(tmp_path), "--chunk-seconds", "5")
    assert local.returncode == 2 and "--chunk-seconds only apply with --executor ray" in local.stderr
    for args, message in ((("stabilize", str(ASTRONAUT)), "detect and landmarks only"),
                          (("detect", str(MEGAMIND), "--preview", str(tmp_path / "p.mp4")), "--preview")):
        result = cli(*args, "-o", str(tmp_path), "--executor", "ray", "--chunk-seconds", "5")
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, args
    assert not list(tmp_path.iterdir())
    embedding = Job(MEGAMIND, tmp_path / "m.faces.parquet", None, detect_file, DetectOptions(embed=True))
    with pytest.raises(UsageError, match="--embed"):
        check_chunkable(embedding, 5.0)


# --------------------------------------------------------------------------- on the cluster


def test_ray_outputs_equal_the_local_executors(cluster, sources: list[Path], local_outputs: Path,
                                               tmp_path: Path) -> None:
    for run, options in ((detect_file, DETECT), (landmarks_file, LandmarkOptions())):
        summary = run_batch(batch(sources, tmp_path, run, options), executor=executors.RayExecutor())
        assert summary.count("done") == 3, summary.results
    for output in sorted(tmp_path.iterdir()):
        assert_same_table(output, local_outputs / output.name)
    again = run_batch(batch(sources, tmp_path, detect_file, DETECT), executor=executors.RayExecutor())
    assert again.count("skipped") == 3, "resume is decided on the driver, as locally"


def test_chunked_video_equals_the_whole_run(cluster, local_outputs: Path, tmp_path: Path) -> None:
    frames: list[int] = []
    for run, options in ((detect_file, DETECT), (landmarks_file, LandmarkOptions())):
        job = batch([MEGAMIND], tmp_path, run, options)[0]
        summary = run_batch([job], on_frames=frames.append, executor=executors.RayExecutor(chunk_seconds=2.0))
        assert summary.count("done") == 1, summary.results
    assert sum(frames) == 2 * 270, "the parts' frames reach the progress bar"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Megamind.faces.parquet", "Megamind.landmarks.parquet"]
    assert_same_table(tmp_path / "Megamind.faces.parquet", local_outputs / "Megamind.faces.parquet")

    assert_same_table(tmp_path / "Megamind.landmarks.parquet", local_outputs / "Megamind.landmarks.parquet")
    # 2 s stretches end at frames 48, 96, ...: parts start at the cuts after them (98, 154, 200),
    # so the track across frame 48 keeps its id.
    chunked_marks = formats.read_table(tmp_path / "Megamind.landmarks.parquet")
    assert set(chunked_marks.face_id[chunked_marks.frame_index == 47]) & \
        set(chunked_marks.face_id[chunked_marks.frame_index == 48])


def test_a_bad_file_fails_as_locally(cluster, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    runs = {}
    for executor in ("local", "ray"):
        out, report = tmp_path / executor, tmp_path / f"{executor}.json"
        extra = ("--executor", "ray", "--address", cluster.address) if executor == "ray" else ()
        result = cli("detect", str(ASTRONAUT), str(text), "-o", str(out), "--report", str(report), *extra)
        failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
        runs[executor] = (result.returncode, failed, json.loads(report.read_text())["failed"])
        assert "Traceback" not in result.stderr
        assert sorted(p.name for p in out.iterdir()) == ["astronaut.faces.parquet"]
    assert runs["ray"] == runs["local"] and runs["ray"][0] == 1 and len(runs["ray"][1]) == 1


def test_workers_with_other_facecli_code_are_refused(cluster, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(executors, "code_fingerprint", lambda: "000000000000")
    with pytest.raises(UsageError, match="install the same facecli on every node"):
        run_batch(batch([ASTRONAUT], tmp_path, detect_file, DETECT), executor=executors.RayExecutor())
    assert not list(tmp_path.iterdir()), "nothing ran, no probe file is left"


def thread_pools(item, progress) -> tuple[str, str, int, str]:
    import cv2
    import onnxruntime

    return (os.environ["OMP_NUM_THREADS"], os.environ["OPENBLAS_NUM_THREADS"], cv2.getNumThreads(),
            onnxruntime.InferenceSession.__name__)


def test_a_task_keeps_its_thread_pools_to_its_cores(cluster) -> None:
    pytest.importorskip("onnxruntime")
    assert executors._Tasks(1, 0, None).map(thread_pools, [None]) == [("1", "1", 1, "LimitedSession")]


def test_a_node_that_does_not_see_a_file_is_named() -> None:
    problem = executors._node_problem("10.0.0.9", executors.__version__, executors.code_fingerprint(),
                                      [("/nowhere/clip.mp4", 10)], [], "token")
    assert problem and "10.0.0.9" in problem and "/nowhere/clip.mp4" in problem and "\n" not in problem


def test_ctrl_c_cancels_the_tasks_and_leaves_no_partial_file(cluster, tmp_path: Path) -> None:
    import signal

    videos = [tmp_path / f"{name}.avi" for name in "abcd"]  # two rounds of tasks on the 2-CPU cluster
    for video in videos:
        shutil.copy(MEGAMIND, video)
    out = tmp_path / "out"
    proc = interruptible([*FACECLI, "landmarks", *map(str, videos), "-o", str(out), "-q", "--executor", "ray",
                          "--address", cluster.address])
    deadline = time.monotonic() + 60
    # wait until a task is being written
    while not (writing := bool(list(out.glob(".*.part.parquet")))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writing, "a task was writing"
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does; the cluster's workers are not in that group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    time.sleep(3)  # a task that went on would finish its file by now
    assert list(out.iterdir()) == [], "the tasks stopped and removed their partial files"


def logged_landmarks(source: Path, output: Path, options, preview, progress):
    """landmarks_file, noting which node each attempt ran on."""
    node = ray.get_runtime_context().get_node_id()
    with (output.parent / "attempts.log").open("a") as log:
        log.write(f"{source.name} {node}\n")
    return landmarks_file(source, output, options, preview, progress)


def test_a_killed_worker_node_loses_no_file(cluster, tmp_path: Path) -> None:
    """Runs last: it takes the cluster's worker node away."""
    videos = []
    for k in range(4):
        videos.append(tmp_path / f"clip{k}.avi")
        shutil.copy(MEGAMIND, videos[-1])
    out = tmp_path / "out"
    out.mkdir()
    jobs = [Job(v, out / f"{v.stem}.landmarks.parquet", None, logged_landmarks, LandmarkOptions()) for v in videos]
    worker = next(iter(cluster.worker_nodes))
    log = out / "attempts.log"

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if log.exists() and worker.node_id in log.read_text():
                time.sleep(1.0)  # into the video
                cluster.remove_node(worker, allow_graceful=False)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    summary = run_batch(jobs, executor=executors.RayExecutor(retries=2))
    killer.join()
    assert worker not in cluster.worker_nodes, "the worker node was killed during the batch"
    assert summary.count("done") == 4 and summary.exit_code == 0, summary.results
    attempts = log.read_text().split()[::2]
    assert len(attempts) > 4, "the file on the killed node ran again elsewhere"
    for video in videos:
        output = out / f"{video.stem}.landmarks.parquet"
        assert formats.read_header(output)["complete"] and len(formats.read_table(output)) == 366
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert visible == ["attempts.log", *sorted(j.output.name for j in jobs)]
    assert all(".part." in p.name for p in out.glob(".*")), "what the killed worker left never looks complete"
