"""Shared fixtures: real media copied into tests/data, and results several tests read."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import facecli
from facecli.media import ffmpeg_exe, iter_frames, read_image

DATA = Path(__file__).parent / "data"
ASTRONAUT = DATA / "astronaut.png"  # NASA portrait, public domain: one smiling face
GRACE_HOPPER = DATA / "grace_hopper.jpg"  # US Navy portrait, public domain (ships in matplotlib)
MEGAMIND = DATA / "Megamind.avi"  # OpenCV's sample clip: 270 frames, cuts at 98, 154, 200
MEGAMIND_CUTS = (1, 98, 154, 200)  # frame 0 is black; every other frame shows a face
# Public-domain LibriVox clips (16 kHz mono) and what is said in them.
SPEECH = DATA / "speech"
CLIPS = {
    clip: (SPEECH / f"sense_and_sensibility_01_austen_64kb-{clip}.wav", text)
    for clip, text in {
        "0870": "and mister john dashwood had then leisure to consider how much there might be prudently in "
                "his power to do for them",
        "0880": "he was not an ill disposed young man",
        "0890": "unless to be rather cold hearted and rather selfish is to be ill disposed",
    }.items()
}


@pytest.fixture(scope="session")
def megamind_landmarks() -> facecli.Landmarks:
    return facecli.landmarks(MEGAMIND)


@pytest.fixture(scope="session")
def astronaut_faces() -> facecli.Faces:
    return facecli.detect(ASTRONAUT)


def face_crop(path: Path, margin: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """A real face with some context, and its detection box inside that crop."""
    image = read_image(path)
    box = facecli.detect(path).box_xywh[0]
    x0, y0 = (np.maximum(box[:2] - margin * box[2:], 0)).astype(int)
    x1, y1 = np.minimum(box[:2] + (1 + margin) * box[2:], image.shape[1::-1]).astype(int)
    return image[y0:y1, x0:x1], box - [x0, y0, 0, 0]


@pytest.fixture
def mesh_fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one for every MediaPipe face-mesh fit made while the test runs."""
    from facecli.backends.mediapipe_backend import FaceMeshSession

    calls: list[int] = []
    fit = FaceMeshSession.fit_frame
    monkeypatch.setattr(FaceMeshSession, "fit_frame", lambda self, *a: calls.append(1) or fit(self, *a))
    return calls


@pytest.fixture(scope="session")
def group_composite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """Real faces pasted at 40 to 170 px onto a blurred real background; returns the file and true boxes."""
    import cv2
    from PIL import Image

    crops = [face_crop(ASTRONAUT), face_crop(GRACE_HOPPER)]
    background = read_image(GRACE_HOPPER)[420:, :]
    canvas = cv2.GaussianBlur(cv2.resize(background, (1280, 1024)), (0, 0), 8)
    truth, x, y, row_height = [], 10, 10, 0
    for i, size in enumerate((40, 48, 56, 64, 80, 100, 130, 170)):
        crop, box = crops[i % 2]
        k = size / box[2]
        patch = cv2.resize(crop, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        if x + patch.shape[1] > canvas.shape[1]:
            x, y, row_height = 10, y + row_height + 10, 0
        canvas[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
        truth.append(box * k + [x, y, 0, 0])
        x, row_height = x + patch.shape[1] + 10, max(row_height, patch.shape[0])
    path = tmp_path_factory.mktemp("composite") / "group.png"
    Image.fromarray(canvas).save(path)
    return path, np.array(truth)


def first_frames(path: Path, count: int) -> list[np.ndarray]:
    frames = []
    for frame in iter_frames(path):
        frames.append(frame.image)
        if len(frames) == count:
            break
    return frames


def ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg to make test media."""
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """float samples in [-1, 1] (or int16) as a mono 16-bit wav."""
    pcm = samples if samples.dtype == np.int16 else (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


def concatenate_wavs(parts: list[Path], target: Path) -> Path:
    """16 kHz mono 16-bit wav files, one after the other."""
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        for part in parts:
            with wave.open(str(part)) as w:
                out.writeframes(w.readframes(w.getnframes()))
    return target


@pytest.fixture(scope="session")
def bad_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Inputs that must fail cleanly: no face, no audio stream, garbage, an empty file."""
    tmp = tmp_path_factory.mktemp("bad_media")
    files = {"wall": tmp / "wall.png", "mute": tmp / "mute.mp4", "garbage": tmp / "noise.wav", "empty": tmp / "empty.mp4"}
    facecli.media.write_image(files["wall"], np.full((200, 200, 3), 120, np.uint8))
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=160x120:d=1", "-pix_fmt", "yuv420p", str(files["mute"]))
    files["garbage"].write_bytes(np.random.default_rng(0).bytes(5000))
    files["empty"].write_bytes(b"")
    return files


@contextlib.contextmanager
def sigint_default() -> Iterator[None]:
    """Processes started inside get Ctrl-C's default action even where this test run ignores
    SIGINT (a shell's background job, as some CI runners start one): an ignored signal stays
    ignored in a child, while a handler is reset to the default at exec."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def interruptible(cmd: list[str]) -> subprocess.Popen:
    """``cmd`` in a new session (a process group to send Ctrl-C to), stderr piped."""
    with sigint_default():
        return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)


# Frame n of a marked clip has its red-difference chroma raised by RED_STEP * (2n mod 5), which
# raises red minus green by up to 2.4 * RED_STEP all over (``red_mark``): any two frames up to 2
# apart differ by a step or more (6 levels or more on Megamind), so an output frame tells which
# source frame it shows. Steps are small enough that the shot-cut detector sees no cut.
RED_STEP = 4


def marked_clip(path: Path, variable: bool) -> Path:
    """The first 3 s of Megamind at 360x264 with its audio, frames marked in colour. Variable
    (``variable``): every frame of the first second, then every 6th (gaps of 0.25 s at 24000/1001
    frames/s), as in the QA report's clip; else all 72 frames."""
    pick = "select='lt(t\\,1)+not(mod(n\\,6))'," if variable else ""
    mark = f"geq=lum='lum(X\\,Y)':cb='cb(X\\,Y)':cr='min(cr(X\\,Y)+{RED_STEP}*mod(2*N\\,5)\\,255)'"
    ffmpeg("-i", str(MEGAMIND), "-t", "3", "-vf", f"scale=360:264,{pick}{mark}",
           *(["-fps_mode", "vfr"] if variable else []),
           "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-c:a", "aac", str(path))  # fmt: skip
    return path


@pytest.fixture(scope="session")
def vfr_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return marked_clip(tmp_path_factory.mktemp("vfr") / "vfr.mp4", variable=True)


@pytest.fixture(scope="session")
def cfr_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return marked_clip(tmp_path_factory.mktemp("cfr") / "cfr.mp4", variable=False)


def frames_on_screen(source_s: np.ndarray, output_s: np.ndarray, fps: float) -> np.ndarray:
    """For each output frame time (s, from 0), the source frame on screen then: the last to
    start by it, source times counted from the first frame's (a quarter frame of slack for
    timestamps rounded to the container's time base)."""
    return np.searchsorted(source_s - source_s[0], output_s + 0.25 / fps, side="right") - 1


def red_mark(image_rgb: np.ndarray) -> float:
    """A marked clip's frame mark: the median of red minus green (what is drawn over a few
    pixels does not move it)."""
    return float(np.median(image_rgb[..., 0].astype(np.int16) - image_rgb[..., 1]))


def shown_frames(output_rgb: list[np.ndarray], source_rgb: list[np.ndarray], expected: np.ndarray) -> np.ndarray:
    """For each output frame, the source frame it shows, told by its mark among the source frames
    up to 2 from the ``expected`` one (whose marks all differ)."""
    marks = np.array([red_mark(image) for image in source_rgb])
    found = []
    for image, k in zip(output_rgb, expected):
        near = np.arange(max(k - 2, 0), min(k + 3, len(marks)))
        found.append(near[np.argmin(np.abs(marks[near] - red_mark(image)))])
    return np.array(found)
