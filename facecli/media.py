"""The one media layer: probe, decode and encode images and videos.

Videos go through the ffmpeg binary bundled with imageio-ffmpeg, run with argument
lists (never a shell) and streamed frame by frame, so memory does not grow with
video length. Every unreadable input raises ``InputError`` naming the file and
saying what to do; every unwritable output raises ``OutputError``.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import math
import os
import queue
import re
import shutil
import subprocess
import threading
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import cv2
import imageio_ffmpeg
import numpy as np
from PIL import ExifTags, Image, ImageOps

try:
    import fcntl
except ImportError:  # Windows: pipes keep their default size
    fcntl = None  # type: ignore[assignment]

from .atomic import atomic_output
from .errors import BackendUnavailable, InputError, OutputError, UsageError

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})

DEFAULT_MAX_PIXELS = 100_000_000
PROBE_TIMEOUT_S = 60
MAX_GAP_S = 600.0  # frame times jumping further are broken, not a pause: no 10-minute still is encoded
STDERR_TAIL_LINES = 20
PIPE_BYTES = 1 << 20  # frame pipes to and from ffmpeg (Linux's default cap for a pipe)
RIFF_SLACK_BYTES = 4096  # a RIFF file (AVI, WAV, WebP) this much shorter than its header says is truncated
STAMP_TIMEOUT_S = 10.0
SEEK_BACK_S = 2.0  # a segment's seek lands this far before its first frame, for ffmpeg's seek to land in time

# Substrings (lower case) of ffmpeg log lines that mean the input is damaged.
_DECODE_ERROR_MARKERS = (
    "invalid data",
    "partial file",
    "corrupt",
    "error while decoding",
    "truncating packet",
    "moov atom not found",
    "invalid nal unit",
    "ended prematurely",  # Matroska/WebM cut short: its header's duration gives the frames it lacks
)
# EXIF orientations that turn the image by 90 or 270 degrees.
_EXIF_SWAPS_AXES = frozenset({5, 6, 7, 8})


def max_pixels() -> int:
    """Largest decoded frame (width*height, pixels) accepted; env FACECLI_MAX_PIXELS."""
    raw = os.environ.get("FACECLI_MAX_PIXELS", "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"FACECLI_MAX_PIXELS must be a positive whole number of pixels, got {raw!r}")
    return value


def is_image_path(path: str | Path) -> bool:
    """True when the suffix is one of IMAGE_SUFFIXES (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary (imageio-ffmpeg's, or env IMAGEIO_FFMPEG_EXE)."""
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise BackendUnavailable(f"no ffmpeg binary ({exc}); reinstall imageio-ffmpeg") from exc
    found = exe if os.sep in exe else shutil.which(exe)  # a bare name (the system's ffmpeg) is on PATH
    if not (found and os.path.isfile(found) and os.access(found, os.X_OK)):  # IMAGEIO_FFMPEG_EXE: unchecked
        raise BackendUnavailable(f"ffmpeg not found at {exe}; fix IMAGEIO_FFMPEG_EXE or reinstall imageio-ffmpeg")
    return exe


def ffmpeg_version() -> str:
    """ffmpeg's first -version line; BackendUnavailable when the binary is missing or is not ffmpeg."""
    exe = ffmpeg_exe()
    try:
        done = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendUnavailable(f"{exe} does not run ({exc}); fix IMAGEIO_FFMPEG_EXE") from exc
    first = (done.stdout.splitlines() or [""])[0]
    if done.returncode != 0 or not first.startswith("ffmpeg version"):
        raise BackendUnavailable(f"{exe} is not a working ffmpeg (-version gave exit {done.returncode}); "
                                 "fix IMAGEIO_FFMPEG_EXE or reinstall imageio-ffmpeg")
    return first


@dataclass(frozen=True)
class MediaInfo:
    """What the header of an image or video says."""

    path: Path
    kind: str  # "image" or "video"
    width: int  # px, after rotation / EXIF orientation is applied
    height: int  # px, after rotation / EXIF orientation is applied
    fps: float  # nominal frames/s from the header; 0.0 for images
    frame_count: int  # header estimate (duration*fps) for video; 1 for images
    duration_s: float  # seconds; 0.0 for images
    rotation_deg: int  # clockwise turn a player applies (legacy `rotate` tag convention); 0 for images
    has_audio: bool
    codec: str
    # "bt601" or "bt709" where frames can come as yuv420p and be converted here (see YuvImage):
    # an unrotated yuv420p stream of even size and limited range with one of those matrices; else "".
    yuv_matrix: str = ""
    # ffmpeg's tbr (r_frame_rate), frames/s: the rate all frame times lie on. An MP4's ``fps`` is
    # the average, below this where the rate varies; 0.0 where not given and for images.
    base_fps: float = 0.0


def _yuv_to_rgb(kr: float, kb: float) -> np.ndarray:
    """3 x 4 matrix from limited-range (16-235, 16-240) Y'CbCr to R'G'B', as swscale applies it."""
    kg = 1.0 - kr - kb
    luma, chroma = 255.0 / 219.0, 255.0 / 224.0
    m = np.array([[luma, 0.0, chroma * 2 * (1 - kr)],
                  [luma, -chroma * 2 * (1 - kb) * kb / kg, -chroma * 2 * (1 - kr) * kr / kg],
                  [luma, chroma * 2 * (1 - kb), 0.0]])
    return np.column_stack([m, -m @ np.array([16.0, 128.0, 128.0])]).astype(np.float32)


YUV_TO_RGB = {"bt601": _yuv_to_rgb(0.299, 0.114), "bt709": _yuv_to_rgb(0.2126, 0.0722)}


def _inverse_affine(m: np.ndarray) -> np.ndarray:
    inverse = np.linalg.inv(m[:, :3].astype(np.float64))
    return np.column_stack([inverse, -inverse @ m[:, 3]]).astype(np.float32)


RGB_TO_YUV = {name: _inverse_affine(m) for name, m in YUV_TO_RGB.items()}


# chroma (column c, row r) sits at luma (2c, 2r + 0.5): MPEG-2 / H.264 siting
_CHROMA_SITE = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])


def _warp_plane(plane: np.ndarray, warp_2x3: np.ndarray, size: tuple[int, int], border: int,
                black: int) -> np.ndarray:
    return cv2.warpAffine(plane, warp_2x3, size, flags=cv2.INTER_LINEAR, borderMode=border, borderValue=black)


def i420_planes(i420: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a C-contiguous (h * 3/2, w) I420 array, h and w even."""
    if i420.ndim != 2 or i420.shape[0] % 3 or i420.shape[1] % 2 or not i420.flags.c_contiguous:
        raise ValueError(f"not a contiguous I420 array of an even size: {i420.shape}")
    h, w = i420.shape[0] * 2 // 3, i420.shape[1]
    u, v = i420[h:].reshape(2, h // 2, w // 2)
    return i420[:h], u, v


def rgb_to_i420(rgb: np.ndarray, matrix: str = "bt601") -> np.ndarray:
    """An even-size RGB image as I420 in ``matrix`` (limited range). Chroma is sited as
    ``YuvImage`` reads it (even columns, between two rows): each sample is the [1 2 1]/4 mean
    across its column and its neighbours, over the two rows, so thin colour lines survive."""
    h, w = rgb.shape[:2]
    yuv = cv2.transform(rgb.astype(np.float32), RGB_TO_YUV[matrix])
    padded = np.pad(yuv[..., 1:], ((0, 0), (1, 1), (0, 0)), mode="edge")
    across = 0.25 * padded[:, 0:w:2] + 0.5 * padded[:, 1:w + 1:2] + 0.25 * padded[:, 2:w + 2:2]
    chroma = 0.5 * (across[0::2] + across[1::2])
    out = np.empty((h * 3 // 2, w), np.uint8)
    y, u, v = i420_planes(out)
    y[:], u[:], v[:] = (np.clip(np.rint(plane), 0, 255) for plane in (yuv[..., 0], chroma[..., 0], chroma[..., 1]))
    return out


@dataclass(frozen=True)
class YuvImage:
    """A decoded yuv420p picture, turned into RGB only where it is looked at.

    Decoding to yuv420p and converting just a face's crop costs about 1 ms less per 720p frame
    than having ffmpeg convert and pipe whole RGB frames. Chroma is sited as in MPEG-2/H.264
    (left, between two lines).
    """

    y: np.ndarray  # (h, w) uint8, h and w even
    u: np.ndarray  # (h/2, w/2) uint8
    v: np.ndarray
    matrix: str  # a YUV_TO_RGB key

    def _rgb(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return cv2.transform(cv2.merge([y, u, v]), YUV_TO_RGB[self.matrix])

    def rgb(self) -> np.ndarray:
        """The whole picture, chroma repeated over each 2 x 2 block (as swscale's rgb24 output)."""
        h, w = self.y.shape  # OpenCV's functions release the GIL: a writer thread converts in parallel
        return self._rgb(self.y, *(cv2.resize(c, (w, h), interpolation=cv2.INTER_NEAREST) for c in (self.u, self.v)))

    def warp_rgb(self, warp_2x3: np.ndarray, size: tuple[int, int], border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
        """What ``cv2.warpAffine(rgb, warp_2x3, size, borderMode=border)`` gives (bilinear; a
        constant border is black)."""
        warp = np.asarray(warp_2x3, np.float64)
        y = _warp_plane(self.y, warp, size, border, 16)
        u, v = (_warp_plane(c, warp @ _CHROMA_SITE, size, border, 128) for c in (self.u, self.v))
        return self._rgb(y, u, v)

    def warp_i420(self, warp_2x3: np.ndarray, size: tuple[int, int], border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
        """The same warp kept in YUV: one (h * 3/2, w) I420 array (Y, then U, then V at half size),
        what ``VideoWriter(yuv_matrix=...)`` takes; ``size`` even. No RGB is made, here or in the
        encoder."""
        w, h = size
        if w % 2 or h % 2:
            raise ValueError(f"I420 needs an even size, got {w}x{h}")
        warp = np.asarray(warp_2x3, np.float64)
        # output chroma -> output luma -> source luma -> source chroma, as a forward warp
        to_chroma = (np.linalg.inv(_CHROMA_SITE) @ np.vstack([warp @ _CHROMA_SITE, [0.0, 0.0, 1.0]]))[:2]
        out = np.empty((h * 3 // 2, w), np.uint8)
        y, u, v = i420_planes(out)
        y[:] = _warp_plane(self.y, warp, size, border, 16)
        u[:], v[:] = (_warp_plane(c, to_chroma, (w // 2, h // 2), border, 128) for c in (self.u, self.v))
        return out

    def coarse_rgb(self, side: int) -> np.ndarray:
        """A ``side`` x ``side`` point-sampled RGB thumbnail."""
        y = cv2.resize(self.y, (side, side), interpolation=cv2.INTER_NEAREST)
        u, v = (cv2.resize(c, (side, side), interpolation=cv2.INTER_NEAREST) for c in (self.u, self.v))
        return self._rgb(y, u, v)


class Frame:
    """One decoded frame: ``image`` is HxWx3 uint8 RGB, made on first use for a frame decoded
    as yuv420p; ``crop_rgb`` and ``coarse_rgb`` need only part of it."""

    __slots__ = ("index", "timestamp_s", "_image", "yuv")

    def __init__(self, index: int, timestamp_s: float, image: np.ndarray | None = None,
                 yuv: YuvImage | None = None):
        self.index = index  # 0-based index among all decoded frames
        self.timestamp_s = timestamp_s  # presentation time, seconds (real per-frame pts, so VFR is kept)
        self._image, self.yuv = image, yuv

    @property
    def image(self) -> np.ndarray:
        if self._image is None:
            self._image = self.yuv.rgb()
        return self._image

    @property
    def shape(self) -> tuple[int, int, int]:
        """``image.shape``, known without making the image."""
        return (*self.yuv.y.shape, 3) if self._image is None else self._image.shape

    def crop_rgb(self, warp_2x3: np.ndarray, size: tuple[int, int],
                 border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
        """``cv2.warpAffine`` of the RGB image (bilinear; a constant border is black), from the
        planes if decoded as YUV."""
        if self.yuv is not None:
            return self.yuv.warp_rgb(warp_2x3, size, border)
        return cv2.warpAffine(self.image, np.asarray(warp_2x3, np.float64), size, flags=cv2.INTER_LINEAR,
                              borderMode=border)

    def crop_i420(self, warp_2x3: np.ndarray, size: tuple[int, int],
                  border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
        """``crop_rgb`` as an I420 array (``size`` even) in the stream's matrix (its
        ``MediaInfo.yuv_matrix``), else BT.601: from the planes if decoded as YUV, else
        converted (``rgb_to_i420``)."""
        if self.yuv is not None:
            return self.yuv.warp_i420(warp_2x3, size, border)
        return rgb_to_i420(self.crop_rgb(warp_2x3, size, border))

    def coarse_rgb(self, side: int) -> np.ndarray:
        """A ``side`` x ``side`` point-sampled RGB thumbnail."""
        if self.yuv is not None:
            return self.yuv.coarse_rgb(side)
        return cv2.resize(self.image, (side, side), interpolation=cv2.INTER_NEAREST)


# --------------------------------------------------------------------------- checks


def _check_file(path: str | Path) -> Path:
    """Return ``path`` as a Path, or raise InputError when it is not a readable, non-empty file."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found; check the path", path)
    if path.is_dir():
        raise InputError("is a folder, not a media file; pass the files inside it", path)
    if path.stat().st_size == 0:
        raise InputError("empty file (0 bytes); re-export or remove it", path)
    if not os.access(path, os.R_OK):
        raise InputError("cannot read it (permission denied); fix its permissions", path)
    if (cut := _riff_shortfall(path)) is not None:
        raise InputError(f"truncated file: its header says {cut[0]} bytes but it holds {cut[1]}; "
                         "re-download or re-encode it", path)
    return path


def _riff_shortfall(path: Path) -> tuple[int, int] | None:
    """(size the header declares, size on disk) of a RIFF file (AVI, WAV, WebP) that was cut short.

    Such files often decode without an error up to the cut (an AVI whose index went with its
    end even looks like a shorter video), so the RIFF size field is what tells. Writers that do
    not know the size leave 0 or 0xFFFFFFFF there; a few bytes of difference are padding.
    """
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF":
        return None
    size_field = int.from_bytes(head[4:8], "little")
    if size_field in (0, 0xFFFFFFFF):
        return None
    declared, actual = size_field + 8, path.stat().st_size
    return (declared, actual) if declared - actual > max(RIFF_SLACK_BYTES, declared // 100) else None


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.3g} MP"


# OpenCV (inside MediaPipe too) aborts the whole process on images 32767 px or more on a side.
MAX_SIDE_PX = 16384


def _check_pixels(kind: str, width: int, height: int, path: Path) -> None:
    """Refuse frames over max_pixels() or MAX_SIDE_PX before anything is decoded."""
    if max(width, height) > MAX_SIDE_PX:
        raise InputError(f"{kind} is {width}x{height}, over {MAX_SIDE_PX} px on a side; scale it down first", path)
    cap = max_pixels()
    if width * height > cap:
        raise InputError(
            f"{kind} is {width}x{height} = {_megapixels(width * height)}, over the {_megapixels(cap)} cap; "
            "set FACECLI_MAX_PIXELS to allow it",
            path,
        )


# --------------------------------------------------------------------------- images


def _open_image(path: Path) -> Image.Image:
    """Open (header only) and check the pixel cap; Pillow's bomb guard uses the same cap."""
    Image.MAX_IMAGE_PIXELS = max_pixels()
    try:
        with warnings.catch_warnings():
            # Pillow warns between 1x and 2x its limit; our own check below gives the error.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        # Pillow refuses before we see the size; its message carries the pixel count.
        count = re.search(r"\((\d+) pixels\)", str(exc))
        size = _megapixels(int(count.group(1))) if count else "too large"
        raise InputError(
            f"image is {size}, over the {_megapixels(max_pixels())} cap; set FACECLI_MAX_PIXELS to allow it", path
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError("not an image Pillow can decode (is the suffix right?)", path) from exc
    try:
        _check_pixels("image", im.width, im.height, path)
    except InputError:
        im.close()
        raise
    return im


def _exif_orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(ExifTags.Base.Orientation, 1))
    except (OSError, ValueError, SyntaxError, TypeError):
        return 1  # a broken EXIF block is ignored, as viewers do


def _probe_image(path: Path) -> MediaInfo:
    with _open_image(path) as im:
        width, height = im.size
        # Pillow turns TIFFs itself (its size is already the displayed one); others as stored
        if im.format != "TIFF" and _exif_orientation(im) in _EXIF_SWAPS_AXES:
            width, height = height, width
        codec = (im.format or "unknown").lower()
    return MediaInfo(path, "image", width, height, 0.0, 1, 0.0, 0, False, codec)


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> HxWx3 uint8 RGB; high bit depths are scaled, not clipped."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit sources (Pillow gives 'I' for some of them): keep the top 8 bits.
        gray = (np.clip(np.asarray(im, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
    elif im.mode == "F":
        data = np.nan_to_num(np.asarray(im, dtype=np.float64))
        scale = 255.0 if data.max(initial=0.0) <= 1.0 else 1.0  # float images are either 0..1 or 0..255
        gray = np.clip(np.rint(data * scale), 0, 255).astype(np.uint8)
    else:
        rgb = np.array(im.convert("RGB") if im.mode != "RGB" else im, dtype=np.uint8)
        return np.ascontiguousarray(rgb)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image to HxWx3 uint8 RGB (C-contiguous), EXIF orientation applied, alpha dropped."""
    path = _check_file(path)
    with _open_image(path) as im:
        try:
            return _to_rgb8(ImageOps.exif_transpose(im))
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"image cannot be decoded ({exc}); re-export it", path) from exc


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write HxWx3 uint8 RGB atomically; the format comes from the suffix (JPEG/WebP at quality 95)."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"unknown image suffix {path.suffix!r}; use one of {', '.join(sorted(IMAGE_SUFFIXES))}", path)
    _check_frame(rgb)
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    with atomic_output(path) as tmp:
        try:
            Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(tmp, format=fmt, **options)
        except OSError as exc:
            raise OutputError(f"cannot write image ({exc}); check disk space and permissions", path) from exc


def _check_frame(rgb: np.ndarray, width: int | None = None, height: int | None = None) -> None:
    """Reject arrays that are not HxWx3 uint8 (of the given size): a caller bug, hence ValueError."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {rgb.dtype} {rgb.shape}")
    if width is not None and rgb.shape[:2] != (height, width):
        raise ValueError(f"expected a {height}x{width}x3 frame, got {rgb.shape}")


# --------------------------------------------------------------------------- video probe

_RE_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_RE_VIDEO = re.compile(r"^\s*Stream #\d+:\d+.*?: Video: (\w+)(.*)$")
_RE_SIZE = re.compile(r", (\d+)x(\d+)\b")  # ", 720x528": the comma keeps codec tags like 0x3163 out
_RE_RATE = re.compile(r", (\d+(?:\.\d+)?)(k?) (fps|tbr)\b")
_RE_DISPLAY_MATRIX = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees", re.IGNORECASE)
_RE_ROTATE_TAG = re.compile(r"^\s*rotate\s*:\s*(-?\d+)")


def _ffmpeg_input(path: Path) -> str:
    """The `file:` protocol stops ffmpeg from reading names like 'concat:x' or 'http:x' as URLs."""
    return f"file:{path.resolve()}"


def _snap_rate(fps: float) -> float:
    """ffmpeg prints rates rounded (23.98); restore the exact NTSC rates (24000/1001)."""
    for base in (24, 30, 48, 60, 120):
        exact = base * 1000 / 1001
        if abs(fps - exact) < 0.006:
            return exact
    return fps


def _parse_rates(text: str) -> tuple[float, float]:
    """(fps, else tbr; tbr) of a stream line, 0.0 where not given."""
    rates = {unit: float(num) * (1000 if k else 1) for num, k, unit in _RE_RATE.findall(text)}
    return _snap_rate(rates.get("fps") or rates.get("tbr") or 0.0), _snap_rate(rates.get("tbr", 0.0))


_TIME_BASE_FPS, _FALLBACK_FPS = 1000.0, 60.0


def output_fps(info: MediaInfo) -> float:
    """The rate to encode a video of ``info``'s frames at, resampled by their times
    (``VideoWriter.write``), as ``ffmpeg -fps_mode cfr`` picks it: the base rate (tbr), which a
    variable frame rate's fastest stretch runs at (its average would drop frames there) and a
    constant one equals, unless it is a time base rather than a rate (over 210 for an average
    under 70). 0.0 where the header gives no rate."""
    rate = info.fps if not info.base_fps or (0 < info.fps < 70 and info.base_fps > 210) else info.base_fps
    # a container's time base read as a rate (WebM without a rate says "1k tbr"): resampled to 60
    return _FALLBACK_FPS if rate >= _TIME_BASE_FPS else rate


def _rotation_cw(block: list[str]) -> int:
    """Clockwise display rotation from a stream's side data or legacy rotate tag, snapped to 90."""
    for line in block:
        if m := _RE_DISPLAY_MATRIX.search(line):
            return round(-float(m.group(1)) / 90) * 90 % 360  # the display matrix angle is counter-clockwise
        if m := _RE_ROTATE_TAG.match(line):
            return round(int(m.group(1)) / 90) * 90 % 360
    return 0


def _stream_block(lines: list[str], start: int) -> list[str]:
    """Lines belonging to the stream that starts at ``start`` (metadata, side data)."""
    block = []
    for line in lines[start + 1 :]:
        if re.match(r"\s*(Stream #|Input #|Output #|At least one)", line):
            break
        block.append(line)
    return block


def _starts_like_mp4(path: Path) -> bool:
    """True when the file opens with an ISO-BMFF box (size + 'ftyp', 'mdat', ...)."""
    with path.open("rb") as fh:
        return fh.read(8)[4:] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


def _probe_error(path: Path, stderr: str) -> InputError:
    if path.suffix.lower() in (".parquet", ".csv"):  # a stage file handed to a command that reads media
        return InputError("a table, not media: this command does not read this kind of file "
                          "(docs/formats.md says which command reads each)", path)
    lower = stderr.lower()
    # ffmpeg falls back to the suffix, so any junk named .mp4 also lacks a moov atom.
    if "moov atom not found" in lower and _starts_like_mp4(path):
        return InputError("truncated or unfinished MP4 (moov atom not found); re-download or re-encode it", path)
    if "invalid data found" in lower:
        return InputError("not a video or image ffmpeg can decode (is the suffix right?)", path)
    if not stderr.strip():  # ffmpeg always says why it cannot open a file: this binary is not ffmpeg
        return InputError(f"{ffmpeg_exe()} said nothing about it; check ffmpeg with facecli doctor", path)
    return InputError(f"ffmpeg cannot open it ({_last_line(stderr.splitlines())}); re-encode it", path)


def _clean(line: str) -> str:
    """An ffmpeg log line without its '[h264 @ 0x55..]' tags and final period, for our messages."""
    return re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip()).rstrip(".")


def _last_line(lines: list[str] | deque[str]) -> str:
    meaningful = [_clean(ln) for ln in lines if ln.strip() and "At least one output file" not in ln]
    return meaningful[-1] if meaningful else "no message"


def _ffmpeg_header(path: Path) -> tuple[str, list[str]]:
    """Run `ffmpeg -i` (there is no ffprobe in imageio-ffmpeg) and return its stderr and lines."""
    stat = path.stat()
    try:
        stderr = _header_text(str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    except subprocess.TimeoutExpired as exc:
        raise InputError(f"ffmpeg needed over {PROBE_TIMEOUT_S} s to read the header; re-encode it", path) from exc
    lines = stderr.splitlines()
    if not any(line.startswith("Input #") for line in lines):
        raise _probe_error(path, stderr)
    return stderr, lines


@functools.lru_cache(maxsize=64)
def _header_text(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """What `ffmpeg -i` says of a file, kept while its size and modification time stay the same:
    a stage reads a header several times, at about 20 ms a run."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", _ffmpeg_input(Path(path))]
    done = subprocess.run(cmd, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
    return done.stderr.decode("utf-8", errors="replace")


def _has_audio_stream(lines: list[str]) -> bool:
    return any(re.match(r"\s*Stream #\d+:\d+.*?: Audio: ", ln) for ln in lines)


def _probe_video(path: Path) -> MediaInfo:
    stderr, lines = _ffmpeg_header(path)
    if any(_RE_STILL_DEMUXER.match(line) for line in lines):  # a still image under a video's name
        return _probe_image(path)
    video_at = next((i for i, ln in enumerate(lines) if _RE_VIDEO.match(ln) and "attached pic" not in ln), None)
    if video_at is None:
        raise InputError("has no video stream; pass a video or an image", path)
    codec, rest = _RE_VIDEO.match(lines[video_at]).groups()
    size = _RE_SIZE.search(rest)
    if size is None or int(size.group(1)) == 0 or int(size.group(2)) == 0:
        raise InputError("video stream has no frame size; re-encode it", path)
    width, height = int(size.group(1)), int(size.group(2))
    rotation = _rotation_cw(_stream_block(lines, video_at))
    if rotation in (90, 270):
        width, height = height, width
    dur = _RE_DURATION.search(stderr)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else 0.0
    fps, base_fps = _parse_rates(rest)
    has_audio = _has_audio_stream(lines)
    # Odd sizes (rare: H.264 4:2:0 has none) take swscale's slower path, which interpolates chroma.
    yuv = "" if rotation or width % 2 or height % 2 else _yuv_matrix(rest)
    return MediaInfo(path, "video", width, height, fps, round(duration * fps), duration, rotation, has_audio, codec,
                     yuv, base_fps)


_RE_YUV420P = re.compile(r", yuv420p(?:\(([^)]*)\))?,")
_RE_STILL_DEMUXER = re.compile(r"Input #0, (\w+_pipe|image2),")  # ffmpeg's image readers (png_pipe, ...)
_MATRICES = {"bt709": "bt709", "bt470bg": "bt601", "smpte170m": "bt601", "unknown": "bt601"}
# Other words ffmpeg prints there: range, field order, chroma location.
_NOT_MATRICES = {"tv", "progressive", "top first", "bottom first", "top coded first (swapped)",
                 "bottom coded first (swapped)", "left", "center", "topleft", "top", "bottomleft", "bottom"}


def _yuv_matrix(stream_text: str) -> str:
    """The matrix of a limited-range yuv420p stream as swscale would convert it to RGB (BT.601
    when untagged), or "" when frames must come as RGB from ffmpeg (other formats, full range,
    other matrices)."""
    found = _RE_YUV420P.search(stream_text)
    if found is None:
        return ""
    tokens = [t.strip() for t in (found.group(1) or "").split(",") if t.strip()]
    if "pc" in tokens:  # full range
        return ""
    colour = [t for t in tokens if t not in _NOT_MATRICES]
    if not colour:
        return "bt601"
    return _MATRICES.get(colour[0].split("/")[0], "") if len(colour) == 1 else ""


def probe(path: str | Path) -> MediaInfo:
    """Read the header of an image (by suffix, via Pillow) or a video (via ffmpeg); no frames are decoded.

    Raises InputError when the file is missing, empty, undecodable or over the pixel cap.
    """
    path = _check_file(path)
    info = _probe_image(path) if is_image_path(path) else _probe_video(path)
    _check_pixels(info.kind, info.width, info.height, path)
    return info


# --------------------------------------------------------------------------- video decode


class _StderrPump(threading.Thread):
    """Drains a child's stderr so ffmpeg never blocks on a full pipe; keeps only a short tail.

    ``on_line`` sees every line first; lines it returns True for are not kept in the tail.
    """

    def __init__(self, stream: IO[bytes], on_line: Callable[[str], bool] | None = None):
        super().__init__(daemon=True)
        self._stream = stream
        self._on_line = on_line
        self.tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)

    def run(self) -> None:
        for raw in iter(self._stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip()
            if not (self._on_line and self._on_line(line)):
                self.tail.append(line)


_RE_SHOWINFO = re.compile(r"\bn:\s*(\d+)\s+pts:\s*\S+\s+pts_time:(\S+).*?\bs:(\d+)x(\d+)")


@dataclass
class _DecodeLog:
    """What the stderr thread learned: per-frame (pts_time, w, h) and where errors appeared."""

    stamps: queue.Queue[tuple[float | None, int, int]]
    frames_logged: int = 0
    first_error: str | None = None
    last_error_frame: int = -1

    def next_stamp(self) -> tuple[float | None, int, int] | None:
        """The next frame's stamp, or None when showinfo lines stopped coming (fall back to index/fps)."""
        try:
            # showinfo logs a frame before ffmpeg writes it, so a stamp is late only if unparseable.
            return self.stamps.get(timeout=STAMP_TIMEOUT_S)
        except queue.Empty:
            return None

    def on_line(self, line: str) -> bool:
        if "Parsed_showinfo" in line:
            if stamp := _showinfo_stamp(line):
                self.frames_logged += 1
                self.stamps.put(stamp)
            return True
        if any(marker in line.lower() for marker in _DECODE_ERROR_MARKERS):
            self.first_error = self.first_error or _clean(line)
            self.last_error_frame = self.frames_logged
        return False


def _showinfo_stamp(line: str) -> tuple[float | None, int, int] | None:
    """(pts_time, width, height) of a showinfo frame line, else None; pts_time None for NOPTS."""
    m = _RE_SHOWINFO.search(line) if "Parsed_showinfo" in line else None
    return (_float_or_none(m.group(2)), int(m.group(3)), int(m.group(4))) if m else None


def _frame_time_s(pts_s: float | None, index: int, info: MediaInfo) -> float:
    """A decoded frame's time: its pts, else (no timestamp) its index at the header's rate."""
    return pts_s if pts_s is not None else index / (info.fps or 1.0)


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # showinfo prints NOPTS for frames without a timestamp


def _read_exact(stream: IO[bytes], buf: memoryview) -> int:
    """Fill ``buf`` from ``stream``; return the byte count (short only at end of stream)."""
    got = 0
    while got < len(buf):
        n = stream.readinto(buf[got:])
        if not n:
            break
        got += n
    return got


def _decode_cmd(path: Path, seek_s: float = 0.0, pix_fmt: str | None = "rgb24") -> list[str]:
    # pix_fmt None: frames are decoded and logged, not handed over (frame_times).
    # ffmpeg autorotates by default, so frames come out at probe()'s rotated size.
    # -fps_mode passthrough keeps every decoded frame and its own pts (no dup/drop to a fixed rate).
    # showinfo gives each frame's pts and size; its per-plane checksums are off (0.7 ms per 720p frame).
    # A seek keeps the file's own timestamps, counted from its start as a full decode counts
    # them (-copyts -start_at_zero): a frame's time, and from it its index, stay the same.
    seek = ["-ss", f"{seek_s:.6f}", "-copyts", "-start_at_zero"] if seek_s > 0 else []
    output = ["-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1"] if pix_fmt else ["-f", "null", "-"]
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats",
        *seek, "-i", _ffmpeg_input(path),
        "-map", "0:v:0", "-vf", "showinfo=checksum=0", "-fps_mode", "passthrough", *output,
    ]  # fmt: skip


def iter_frames(path: str | Path, info: MediaInfo | None = None, stride: int = 1) -> Iterator[Frame]:
    """Yield every ``stride``-th decoded frame (index keeps the real decoded index).

    Images yield one Frame(0, 0.0, pixels). Videos are decoded by one ffmpeg process and
    streamed; closing the iterator early stops ffmpeg. Checks (file, pixel cap) run now;
    damage found while decoding raises InputError from the iterator.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    path = _check_file(path)
    info = info or probe(path)
    if info.kind == "image":
        return iter([Frame(0, 0.0, read_image(path))])
    _check_pixels("video", info.width, info.height, path)
    segment = _SEGMENT.get()
    if segment is not None and segment.path == path.resolve():
        if stride != 1:
            raise ValueError("a segment is decoded with stride 1")
        return _iter_segment(path, info, segment)
    return _iter_video(path, info, stride)


def frame_times(path: str | Path, info: MediaInfo | None = None) -> Iterator[float]:
    """Each decoded frame's presentation time in seconds, as ``iter_frames`` gives it, from a
    decode that hands no pixels over (a video whose frames are not needed, to time an output by:
    ``VideoWriter.write``). ffmpeg waits while the log is not read: memory stays flat."""
    path = _check_file(path)
    info = info or probe(path)
    if info.kind == "image":
        yield 0.0
        return
    proc = _start_ffmpeg(_decode_cmd(path, pix_fmt=None), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    count = 0
    try:
        for raw in proc.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip()
            stamp = _showinfo_stamp(line)
            if stamp is None:
                tail.append(line)
                continue
            yield _frame_time_s(stamp[0], count, info)
            count += 1
        proc.wait()
    finally:
        if proc.poll() is None:  # closed early
            proc.kill()
        proc.wait()
        proc.stderr.close()
    if proc.returncode != 0 or count == 0:
        raise InputError(f"ffmpeg stopped at frame {count} ({_last_line(tail)}); re-encode it", path)


@dataclass(frozen=True)
class _Segment:
    path: Path  # resolved
    start: int
    stop: int | None


_SEGMENT: contextvars.ContextVar[_Segment | None] = contextvars.ContextVar("facecli_media_segment", default=None)


@contextlib.contextmanager
def only_frames(path: str | Path, start: int, stop: int | None = None) -> Iterator[None]:
    """Inside the block, :func:`iter_frames` of this video yields only frames ``start`` to
    ``stop - 1`` (None: to the end), numbered as in the whole file.

    This is how a chunked batch runs an unchanged stage on one stretch of a long video. It seeks
    instead of decoding what comes before, and numbers frames by their time since the first
    frame's: that needs evenly spaced frames, else the iterator raises InputError.
    """
    token = _SEGMENT.set(_Segment(Path(path).resolve(), start, stop))
    try:
        yield
    finally:
        _SEGMENT.reset(token)


def _iter_segment(path: Path, info: MediaInfo, segment: _Segment) -> Iterator[Frame]:
    with contextlib.closing(_frames_from(path, info, segment.start)) as frames:
        for frame in frames:
            if segment.stop is not None and frame.index >= segment.stop:
                return
            if frame.index >= segment.start:
                yield frame


def _frames_from(path: Path, info: MediaInfo, start: int) -> Iterator[Frame]:
    """Frames from ``start`` or a little before, numbered by their time since the first frame's:
    by a seek ``SEEK_BACK_S`` before it or, where that lands too late (MPEG-TS seeks by estimate),
    by decoding from the start."""
    with contextlib.closing(_iter_video(path, info, 1)) as head:
        first_s = next(head).timestamp_s
    seek_s = first_s + start / info.fps - SEEK_BACK_S
    if seek_s > 0:
        frames = _iter_video(path, info, 1, seek_s, first_s)
        with contextlib.closing(frames):
            first = next(frames, None)
            if first is not None and first.index <= start:
                yield first
                yield from frames
                return
    yield from _iter_video(path, info, 1, 0.0, first_s)


_LIVE_FFMPEG: weakref.WeakSet[subprocess.Popen] = weakref.WeakSet()


@atexit.register
def _kill_live_ffmpeg() -> None:
    """End decoders of iterators never closed, before Python freezes the threads draining them."""
    for proc in list(_LIVE_FFMPEG):
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _widen_pipe(pipe: IO[bytes] | None) -> None:
    """Raise a frame pipe's buffer from 64 KiB to 1 MiB where Linux allows: a 720p RGB frame
    then crosses in 3 writes instead of 43, each a switch between ffmpeg and us (0.4 ms a frame)."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl else None
    if pipe is not None and set_size is not None:
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: keep the default
            fcntl.fcntl(pipe.fileno(), set_size, PIPE_BYTES)


def _start_ffmpeg(cmd: list[str], **pipes: int) -> subprocess.Popen:
    # Its own session: a Ctrl-C in the terminal reaches Python only, which stops ffmpeg itself
    # (otherwise ffmpeg dies first and the file being read looks damaged).
    proc = subprocess.Popen(cmd, start_new_session=True, **pipes)
    for pipe in (proc.stdin, proc.stdout):
        _widen_pipe(pipe)
    _LIVE_FFMPEG.add(proc)
    return proc


@contextlib.contextmanager
def ffmpeg_output(cmd: list[str], on_line: Callable[[str], bool] | None = None,
                  ) -> Iterator[tuple[subprocess.Popen, _StderrPump]]:
    """Run ffmpeg with its output on a pipe and its stderr drained; always stop and reap it."""
    proc = _start_ffmpeg(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pump = _StderrPump(proc.stderr, on_line)
    pump.start()
    try:
        yield proc, pump
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        pump.join()
        proc.stderr.close()


def _iter_video(path: Path, info: MediaInfo, stride: int, seek_s: float = 0.0,
                first_s: float | None = None) -> Iterator[Frame]:
    # The timestamp queue stays short: ffmpeg logs a frame just before writing it and then
    # stalls on the stdout pipe until we read it, so it is never far ahead of us.
    log = _DecodeLog(queue.Queue())
    pix_fmt = "yuv420p" if info.yuv_matrix else "rgb24"
    with ffmpeg_output(_decode_cmd(path, seek_s, pix_fmt), log.on_line) as (proc, pump):
        decoded, skipped = yield from _stream_frames(proc.stdout, log, info, stride, path, first_s)
        proc.wait()
        pump.join()
        _check_decode_end(path, info, log, pump.tail, proc.returncode, decoded, skipped)


def _frame_number(pts: float | None, first_s: float, fps: float, path: Path) -> int:
    """A frame's index in the whole file from its time (evenly spaced frames only)."""
    position = None if pts is None else (pts - first_s) * fps
    if position is None or abs(position - round(position)) > 0.1:
        raise InputError("cannot number frames by their time: they are not evenly spaced (variable frame "
                         "rate or missing timestamps); decode the whole file instead", path)
    return round(position)


def _stream_frames(
    stdout: IO[bytes], log: _DecodeLog, info: MediaInfo, stride: int, path: Path, first_s: float | None = None,
) -> Generator[Frame, None, tuple[int, int]]:
    """Yield frames read from ffmpeg's stdout; return how many frames the file has up to the
    last one decoded, and how many came before the first (a seek's; with ``first_s``, the time
    of the file's first frame, frames are numbered by their time)."""
    width, height = info.width, info.height
    # rgb24 from ffmpeg, which honours the stream's colour matrix (BT.709 for HD), or yuv420p
    # converted here with the matrix probe() read (YuvImage; OpenCV's own YUV conversion knows
    # only BT.601 and shifted HD colours by up to 18 levels).
    frame_bytes = width * height * 3 // (2 if info.yuv_matrix else 1)  # yuv420p: even sizes only
    scratch = np.empty(frame_bytes, np.uint8)  # reused for frames skipped by stride
    stamps_done = False
    index = skipped = 0
    while True:
        data = np.empty_like(scratch) if index % stride == 0 else scratch
        got = _read_exact(stdout, memoryview(data))
        if got == 0:
            return index, skipped
        if got < frame_bytes:
            raise InputError(f"truncated video: frame {index} was cut short; re-download or re-encode it", path)
        stamp = None if stamps_done else log.next_stamp()
        stamps_done = stamp is None
        if stamp and stamp[1:] != (width, height):
            raise InputError(
                f"frame {index} is {stamp[1]}x{stamp[2]}, not {width}x{height} as the header says; "
                "re-encode it to one frame size",
                path,
            )
        pts = stamp[0] if stamp and stamp[0] is not None else None
        if first_s is not None:
            number = _frame_number(pts, first_s, info.fps, path)
            if index and number != index:
                raise InputError(f"frame {number} follows frame {index - 1}: frames are missing or not evenly "
                                 "spaced; decode the whole file instead", path)
            skipped = skipped if index else number
            index = number
        if index % stride == 0:
            yield _frame(index, _frame_time_s(pts, index, info), data, info)
        index += 1


def _frame(index: int, timestamp_s: float, data: np.ndarray, info: MediaInfo) -> Frame:
    """A Frame over one frame's bytes: rgb24, or yuv420p planes (info.yuv_matrix)."""
    if not info.yuv_matrix:
        return Frame(index, timestamp_s, data.reshape(info.height, info.width, 3))
    planes = i420_planes(data.reshape(info.height * 3 // 2, info.width))
    return Frame(index, timestamp_s, yuv=YuvImage(*planes, info.yuv_matrix))


def _check_decode_end(
    path: Path, info: MediaInfo, log: _DecodeLog, tail: deque[str], returncode: int, decoded: int, skipped: int = 0
) -> None:
    """Raise InputError when ffmpeg failed, decoded nothing, or stopped early because of damage.

    ``decoded`` counts the file's frames up to the last one decoded; ``skipped`` those a seek
    passed over (the log counts from the seek).
    """
    expected = info.frame_count
    decoded_s = decoded / info.fps if info.fps else info.duration_s
    stopped_early = decoded < 0.9 * expected or decoded_s < info.duration_s - 1.0
    # Damage in the last second of decoding plus missing frames: the file was cut off
    # (the header estimate of a cut file already shrinks, so the 90% rule alone misses it).
    errors_at_end = log.last_error_frame + skipped >= decoded - max(2.0, info.fps) and decoded < expected - 1
    if log.first_error and (returncode != 0 or decoded == 0 or stopped_early or errors_at_end):
        raise InputError(
            f"truncated or corrupt video: decoding stopped at frame {decoded} of ~{expected} ({log.first_error}); "
            "re-download or re-encode it",
            path,
        )
    if returncode != 0:
        raise InputError(f"ffmpeg stopped at frame {decoded} of ~{expected} ({_last_line(tail)}); re-encode it", path)
    if decoded == 0:
        raise InputError(f"no frame could be decoded ({_last_line(tail)}); re-encode it", path)


# --------------------------------------------------------------------------- video encode


@functools.cache
def _h264_available() -> bool:
    done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, check=False)
    return b" libx264 " in done.stdout


def _codec_args(crf: int, preset: str = "medium", x264_params: str = "") -> list[str]:
    if _h264_available():
        params = ["-x264-params", x264_params] if x264_params else []
        return ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), *params]
    # mpeg4 has no CRF; its quantiser 1..31 is roughly crf/6 for similar quality.
    return ["-c:v", "mpeg4", "-q:v", str(min(31, max(1, round(crf / 6))))]


def _has_audio(path: str | Path) -> bool:
    """True when ffmpeg finds an audio stream (audio-only files included; images have none)."""
    path = _check_file(path)
    return not is_image_path(path) and _has_audio_stream(_ffmpeg_header(path)[1])


class WriterThread:
    """Makes and writes video frames on a second thread, in order: ``write(make(job))``.

    OpenCV's image functions and pipe writes release the GIL, so warping and handing frames to
    the encoder run on another core while the caller's thread tracks faces. At most ``depth``
    jobs wait (bounded memory). An error on the thread comes out of the next ``put`` or of
    ``close``; the ``with`` block drains the queue on success and drops it on failure.
    """

    def __init__(self, write: Callable[[Any], None], make: Callable[[object], Any], depth: int = 4):
        self._write, self._make = write, make
        self._jobs: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="facecli-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _END or self._stop:
                return
            try:
                self._write(self._make(job))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._error, self._stop = exc, True

    def put(self, job: object) -> None:
        self._raise()
        self._jobs.put(job)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> WriterThread:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self._stop = True
            with contextlib.suppress(queue.Full):
                self._jobs.put_nowait(_END)
        else:
            self._jobs.put(_END)
        self._thread.join()
        if exc is None:
            self._raise()


_END = object()


_COLORSPACE_TAGS = {"bt601": "smpte170m", "bt709": "bt709"}  # YUV_TO_RGB key -> ffmpeg's colorspace name


def _encode_rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)  # 23.976... -> 24000/1001


def cfr_frame(time_s: float, start_s: float, fps: float) -> int:
    """The output frame that a source frame shown from ``time_s`` lands on in a ``VideoWriter``
    at ``fps`` whose frame 0 is at ``start_s``: the nearest, never before 0 (halves round up)."""
    return max(0, math.floor((time_s - start_s) * float(_encode_rate(fps)) + 0.5))


class VideoWriter:
    """Encode RGB frames to a video file (H.264 yuv420p, +faststart; mpeg4 without libx264).

    Odd sizes are padded (one black column/row at the right/bottom) to the even size
    yuv420p needs; no pixel is cropped. With ``yuv_matrix`` (a YUV_TO_RGB key) it takes I420
    frames of an even size instead (``Frame.crop_i420``), encoded without any conversion and
    tagged with their matrix (H.264; the mpeg4 fallback drops the tag). With ``audio_from``
    naming media that has audio,
    its first audio stream is muxed in as AAC, padded with silence or cut to the video's
    length. Given ``frames_expected`` (the most frames that will be written: more raise
    ValueError), the one encoder process takes the audio too, cut to that many frames;
    otherwise, or when fewer are written, close() adds it in a second ffmpeg run (a quarter
    second for the 11 s example, on the caller's clock): ffmpeg's ``-shortest`` would overrun the
    video by up to a second and a half, depending on how the encoder's queue happens to stand at
    the end. The file appears only when close()
    succeeds (atomic_output); an exception inside ``with`` leaves neither the file nor a
    temporary one.

    Frames written with their source time (``write(frame, timestamp_s)``) are resampled to the
    constant rate by those times, as ``ffmpeg -fps_mode cfr`` does, so a variable-frame-rate
    source keeps its pace and stays in sync with its audio: output frame n shows the source
    frame on screen at ``start_s + n / fps`` (each time rounded to the nearest output frame;
    ``cfr_frame``), where ``start_s`` defaults to the first frame's time. A frame is repeated
    over a gap; one that the next replaces within the same output frame is dropped. Frames at
    ``fps`` apart give one output frame each. ``frames_expected`` then counts output frames.
    Only the latest frame is held (until the next one's time says how often it is shown).
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        audio_from: Path | None = None,
        crf: int = 18,
        preset: str = "medium",
        frames_expected: int | None = None,
        yuv_matrix: str = "",
        x264_params: str = "",
        start_s: float | None = None,
    ):
        if width <= 0 or height <= 0 or fps <= 0:
            raise ValueError(f"need positive width, height and fps, got {width}x{height} at {fps}")
        if yuv_matrix and (yuv_matrix not in YUV_TO_RGB or width % 2 or height % 2):
            raise ValueError(f"I420 frames need an even size and a known matrix, got {width}x{height} {yuv_matrix!r}")
        self.yuv_matrix = yuv_matrix
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, fps
        self._audio = Path(audio_from) if audio_from is not None and _has_audio(audio_from) else None
        self._atomic = atomic_output(self.path)
        self._final_tmp = self._atomic.__enter__()
        # Audio is cut to exactly frames/fps (-shortest overruns: see above):
        # inline when the count is known, else frames go to a video-only file that close() muxes.
        self._inline_frames = frames_expected if self._audio and frames_expected else None
        self._video_tmp = self._final_tmp.with_name(self._final_tmp.name + ".video.mp4") if self._audio else None
        self._frames = 0
        self._start_s = start_s  # timed writes: the source time output frame 0 shows
        self._timed: bool | None = None  # whether frames come with their times: the first write says
        self._held: tuple[np.ndarray, int] | None = None  # timed: the latest frame and its output frame
        try:
            self._proc = _start_ffmpeg(
                self._command(self._final_tmp if self._inline_frames else self._video_tmp or self._final_tmp,
                              _codec_args(crf, preset, x264_params)),
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
        except OSError as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise OutputError(f"cannot start ffmpeg ({exc})", self.path) from exc
        self._pump = _StderrPump(self._proc.stderr)
        self._pump.start()
        self._closed = False

    def _command(self, tmp: Path, codec: list[str]) -> list[str]:
        rate = _encode_rate(self.fps)
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "yuv420p" if self.yuv_matrix else "rgb24",
            "-s", f"{self.width}x{self.height}", "-framerate", str(rate), "-i", "pipe:0",
        ]  # fmt: skip
        if self._inline_frames:
            cmd += ["-i", _ffmpeg_input(self._audio)]
        cmd += ["-map", "0:v:0", *codec, "-pix_fmt", "yuv420p"]
        if not self.yuv_matrix:
            cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        else:  # a tag only: an output -colorspace would convert the planes
            cmd += ["-vf", f"setparams=colorspace={_COLORSPACE_TAGS[self.yuv_matrix]}:range=tv"]
        if self._inline_frames:
            seconds = f"{self._inline_frames / self.fps:.6f}"
            cmd += ["-map", "1:a:0", "-c:a", "aac", "-af", "apad", "-t", seconds]
        return [*cmd, *self._container_args(), f"file:{tmp}"]

    def _container_args(self) -> list[str]:
        return ["-movflags", "+faststart"] if self.path.suffix.lower() in (".mp4", ".mov", ".m4v") else []

    def _mux_audio(self) -> None:
        """Video (copied) plus the audio, padded with silence or cut to the video's exact length."""
        duration = self._frames / self.fps
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-i", f"file:{self._video_tmp}", "-i", _ffmpeg_input(self._audio),
            "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-af", "apad",
            "-t", f"{duration:.6f}", *self._container_args(), f"file:{self._final_tmp}",
        ]  # fmt: skip
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._video_tmp.unlink(missing_ok=True)
        if done.returncode != 0:
            raise OutputError(f"ffmpeg failed to add the audio ({_last_line(done.stderr.splitlines())})", self.path)

    def write(self, frame: np.ndarray, timestamp_s: float | None = None) -> None:
        """Append one frame of the size given at construction: HxWx3 uint8 RGB, or with
        ``yuv_matrix`` an (H * 3/2)xW uint8 I420 array. ``timestamp_s``: the source time it is
        shown from, for every frame or for none (see the class); the array must then stay
        unchanged until the next write or close()."""
        if self._closed:
            raise ValueError("write() after close()")
        if self._timed is not None and self._timed != (timestamp_s is not None):
            raise ValueError("give every frame's timestamp_s or none")
        self._timed = timestamp_s is not None
        if not self.yuv_matrix:
            _check_frame(frame, self.width, self.height)
        elif frame.dtype != np.uint8 or frame.shape != (self.height * 3 // 2, self.width):
            raise ValueError(f"expected a {self.height * 3 // 2}x{self.width} uint8 I420 frame, got {frame.shape}")
        if timestamp_s is None:
            self._encode(frame, 1)
            return
        if self._start_s is None:
            self._start_s = timestamp_s
        slot = cfr_frame(timestamp_s, self._start_s, self.fps)
        if slot - self._frames > MAX_GAP_S * self.fps:  # a broken timestamp, not a pause
            raise InputError(f"the source's frame times jump by {(slot - self._frames) / self.fps:.0f} s "
                             "at one frame; re-encode the source at a constant frame rate", self.path)
        if self._held is not None:  # shown until this frame's slot: repeated over a gap, or dropped
            self._encode(self._held[0], slot - self._frames)
        self._held = (frame, slot)

    def _encode(self, frame: np.ndarray, times: int) -> None:
        """Hand ``frame`` to ffmpeg ``times`` times (none where ``times`` <= 0)."""
        for _ in range(times):
            if self._inline_frames is not None and self._frames >= self._inline_frames:
                raise ValueError(f"more frames than frames_expected={self._inline_frames}")
            try:
                self._proc.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
                self._frames += 1
            except OSError as exc:  # BrokenPipeError included: ffmpeg has exited
                self._proc.wait()
                self._pump.join()
                error = self._failure()
                self._abort(error)
                raise error from exc

    def _failure(self) -> OutputError:
        return OutputError(
            f"ffmpeg failed to encode ({_last_line(self._pump.tail)}); check disk space and the -o folder", self.path
        )

    def close(self) -> None:
        """Finish the file and move it into place; raises OutputError when ffmpeg fails."""
        if self._closed:
            return
        if self._held is not None:  # the last timed frame: shown once, unless its slot is taken
            frame, slot = self._held
            self._held = None
            try:
                self._encode(frame, slot + 1 - self._frames)
            except ValueError as exc:
                self._abort(exc)
                raise
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # ffmpeg already exited; its return code below says how
        self._proc.wait()
        self._pump.join()
        self._proc.stderr.close()
        if self._proc.returncode != 0:
            error = self._failure()
            self._abort(error)
            raise error
        if self._inline_frames is not None and self._frames < self._inline_frames:
            self._final_tmp.replace(self._video_tmp)  # its audio runs past the last frame: redo it
            self._inline_frames = None
        if self._video_tmp is not None and self._inline_frames is None:
            try:
                self._mux_audio()
            except OutputError as error:
                self._abort(error)
                raise
        self._closed = True
        try:
            self._atomic.__exit__(None, None, None)
        except OSError as exc:
            raise OutputError(f"cannot move the finished video into place ({exc.strerror})", self.path) from exc

    def _abort(self, exc: BaseException) -> None:
        """Stop ffmpeg and drop the temporary file."""
        if self._closed:
            return
        self._closed, self._held = True, None
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._pump.join()
        for stream in (self._proc.stdin, self._proc.stderr):
            try:
                stream.close()
            except (BrokenPipeError, OSError):
                pass
        if self._video_tmp is not None:
            self._video_tmp.unlink(missing_ok=True)
        self._atomic.__exit__(type(exc), exc, exc.__traceback__)  # removes the temporary file

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        else:
            self._abort(exc)

