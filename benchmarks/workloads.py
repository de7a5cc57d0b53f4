"""The measured workloads (facecli and the raw engine) and the inputs made for them.

Imported by run.py only after it pinned the process to one core: numpy's and MediaPipe's
threads start at import or first use and keep the affinity they were born with. ffmpeg
children inherit that core too, unless ``decoders_placed`` moves them to another.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from placement import Placement, decoder_wrapper
from timing import Work, Workload

from facecli import formats, media
from facecli.backends.mediapipe_backend import quiet_native_logs
from facecli.stages.landmarks import LandmarkOptions, landmarks_file

# 720p test clip: the example's last shot (one close-up face), scaled and padded to 1280x720.
CLOSE_UP_FRAMES = (200, 269)


def facecli_workload(source: Path, out_dir: Path) -> Workload:
    """The whole landmarks stage as the CLI runs it: decode, track, pose, write parquet."""
    output = out_dir / f"{source.stem}.landmarks.parquet"

    def run() -> Work:
        stats = landmarks_file(source, output, LandmarkOptions())
        return Work(stats.frames, stats.rows)

    return run


def raw_mesh_workload(source: Path, max_faces: int) -> Workload:
    """The raw engine as a user would loop it: tracking-mode FaceMesh on every whole frame.

    Same decoder as facecli (media.iter_frames), with ffmpeg converting whole frames to RGB
    (rgb24), the fastest way to the whole RGB frames the raw engine takes (facecli itself decodes
    yuv420p and converts only the crops it fits: media.YuvImage); each result is turned into a
    numpy array, the least any caller does with it.
    """

    def run() -> Work:
        import mediapipe as mp  # first import costs seconds: it belongs to the warm-up run

        frames = fits = 0
        with quiet_native_logs(), mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, refine_landmarks=True, max_num_faces=max_faces
        ) as mesh:
            for frame in media.iter_frames(source, dataclasses.replace(media.probe(source), yuv_matrix="")):
                result = mesh.process(frame.image)
                for face in result.multi_face_landmarks or ():
                    np.array([(p.x, p.y, p.z) for p in face.landmark], np.float64)
                    fits += 1
                frames += 1
        return Work(frames, fits)

    return run


@contextmanager
def decoders_placed(where: Placement, folder: Path) -> Iterator[None]:
    """Run every ffmpeg that facecli starts meanwhile (probes and decoders) on ``where.decoder_cpu``.

    facecli finds ffmpeg through ``media.ffmpeg_exe()`` only (``_decode_cmd`` calls it each
    time), a functools.cache over imageio-ffmpeg's lookup, which honours env IMAGEIO_FFMPEG_EXE:
    point that at a wrapper that pins ffmpeg, and clear the cache on the way in and out.
    """
    if where.shared:  # children inherit this process's one core
        yield
        return
    real, before = media.ffmpeg_exe(), os.environ.get("IMAGEIO_FFMPEG_EXE")
    wrapper = decoder_wrapper(where.decoder_cpu, real, folder)
    os.environ["IMAGEIO_FFMPEG_EXE"] = str(wrapper)
    media.ffmpeg_exe.cache_clear()
    try:
        if media.ffmpeg_exe() != str(wrapper):
            raise RuntimeError(f"facecli would still run {media.ffmpeg_exe()}, not {wrapper}")
        yield
    finally:
        if before is None:
            del os.environ["IMAGEIO_FFMPEG_EXE"]
        else:
            os.environ["IMAGEIO_FFMPEG_EXE"] = before
        media.ffmpeg_exe.cache_clear()
        wrapper.unlink()


def _ffmpeg(*args: str) -> None:
    cmd = [media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    done = subprocess.run(cmd, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)}\n{done.stderr.decode(errors='replace')[-2000:]}")


def make_close_up_720p(source: Path, folder: Path, frames: int = 300) -> Path:
    """A 1280x720 H.264 clip of one face, ``frames`` long.

    The shot plays forward then backward (ping-pong) before it is looped: a plain loop jumps
    from its last frame back to its first, a hard cut every 70 frames that forces a detection
    rescan real footage of one face would not have.
    """
    first, last = CLOSE_UP_FRAMES
    ping_pong = folder / "close_up_ping_pong.mp4"
    _ffmpeg(
        "-i", str(source), "-an", "-filter_complex",
        f"[0:v]trim=start_frame={first}:end_frame={last + 1},setpts=PTS-STARTPTS,"
        "scale=-2:720,pad=1280:720:(ow-iw)/2:0,split[fwd][rev0];[rev0]reverse[rev];"
        "[fwd][rev]concat=n=2:v=1:a=0",
        "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(ping_pong),
    )  # fmt: skip
    clip = folder / "close_up_720p.mp4"
    _ffmpeg("-stream_loop", "-1", "-i", str(ping_pong), "-frames:v", str(frames),
            "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(clip))
    ping_pong.unlink()
    return clip


def make_looped(source: Path, folder: Path, seconds: int) -> Path:
    """The example looped to ``seconds``, video only, by stream copy.

    Copying keeps the example's own codec (so the decode cost per frame is the example's) and
    takes no time; an AVI container keeps the copied timestamps regular across the seams.
    """
    looped = folder / f"{source.stem}_{seconds}s.avi"
    _ffmpeg("-stream_loop", "-1", "-i", str(source), "-t", str(seconds), "-map", "0:v:0", "-c", "copy", str(looped))
    return looped


def frames_written(stage_file: Path) -> int:
    """Frames a finished facecli stage file says it processed."""
    return int(formats.read_header(stage_file)["frames_processed"])
