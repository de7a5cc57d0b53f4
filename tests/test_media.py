"""Tests for facecli.media on real media files and videos generated with ffmpeg."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facecli import media
from facecli.errors import InputError, OutputError, UsageError
from facecli.speech import load_audio
from tests.conftest import ASTRONAUT, CLIPS, MEGAMIND, ffmpeg
from tests.conftest import GRACE_HOPPER as HOPPER


def make_mp4(path: Path, *extra: str, seconds: float = 1.0, size: str = "64x48") -> Path:
    """A small H.264 test-pattern video (10 fps); ``extra`` options go before the output."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size={size}:rate=10", "-t", str(seconds),
           "-c:v", "libx264", "-pix_fmt", "yuv420p", *extra, str(path))  # fmt: skip
    return path


def truncate_copy(src: Path, dst: Path, fraction: float = 0.4) -> Path:
    dst.write_bytes(src.read_bytes()[: int(src.stat().st_size * fraction)])
    return dst


def ffmpeg_children() -> list[str]:
    """'pid state' of this process's ffmpeg children, zombies included (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended while we looked
        comm = text[text.index("(") + 1 : text.rindex(")")]
        state, ppid = text[text.rindex(")") + 2 :].split()[:2]
        if int(ppid) == os.getpid() and "ffmpeg" in comm:
            found.append(f"{stat.parent.name} {state}")
    return found


@pytest.fixture(scope="module")
def megamind_frames() -> list[media.Frame]:
    return list(media.iter_frames(MEGAMIND))


# --------------------------------------------------------------------------- probe and decode


def test_probe_megamind():
    info = media.probe(MEGAMIND)
    assert (info.kind, info.width, info.height, info.codec) == ("video", 720, 528, "mpeg4")
    assert info.fps == pytest.approx(24000 / 1001) and info.base_fps == media.output_fps(info) == info.fps
    assert info.frame_count == 270
    assert info.duration_s == pytest.approx(11.26)
    assert info.rotation_deg == 0
    assert info.has_audio


def test_iter_frames_megamind(megamind_frames):
    fps = 24000 / 1001
    assert [f.index for f in megamind_frames] == list(range(270))
    first = megamind_frames[0].image
    assert first.shape == (528, 720, 3) and first.dtype == np.uint8 and first.flags.c_contiguous
    stamps = np.array([f.timestamp_s for f in megamind_frames])
    assert np.all(np.diff(stamps) > 0)
    # the stream's first pts is one frame in, so allow up to 1.5 frames of offset
    assert np.abs(stamps - np.arange(270) / fps).max() < 1.5 / fps
    assert np.abs(first.astype(int) - megamind_frames[-1].image).mean() > 10  # real, changing content


def test_stride_keeps_real_indices_and_timestamps(megamind_frames):
    strided = list(media.iter_frames(MEGAMIND, stride=50))
    assert [f.index for f in strided] == [0, 50, 100, 150, 200, 250]
    for frame in strided:
        full = megamind_frames[frame.index]
        assert frame.timestamp_s == full.timestamp_s
        assert np.array_equal(frame.image, full.image)


def test_variable_frame_rate_timestamps_are_kept(tmp_path):
    # frame gaps alternate 0.3 s and 0.1 s
    path = make_mp4(tmp_path / "vfr.mp4", "-vf", "setpts=(N*0.2+mod(N\\,2)*0.1)/TB", "-fps_mode", "passthrough",
                    "-frames:v", "8", seconds=2)  # fmt: skip
    stamps = [f.timestamp_s for f in media.iter_frames(path)]
    assert stamps == pytest.approx([0.0, 0.3, 0.4, 0.7, 0.8, 1.1, 1.2, 1.5], abs=1e-3)
    assert list(media.frame_times(path)) == stamps  # the same decode, no pixels handed over
    info = media.probe(path)
    assert (info.fps, info.base_fps, media.output_fps(info)) == (5.0, 10.0, 10.0)  # the average; the rate of its times


def test_display_rotation_swaps_size_and_turns_frames(tmp_path):
    plain = make_mp4(tmp_path / "plain.mp4", "-qp", "0")
    turned = tmp_path / "turned.mp4"
    # -display_rotation is counter-clockwise; the legacy rotate tag is ignored by this ffmpeg's muxer
    ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(turned))
    info = media.probe(turned)
    assert (info.width, info.height, info.rotation_deg) == (48, 64, 270)
    source = next(media.iter_frames(plain)).image.astype(int)
    frame = next(media.iter_frames(turned)).image
    assert frame.shape == (64, 48, 3)
    assert np.abs(frame - np.rot90(source, 1)).mean() < 3
    assert np.abs(frame - np.rot90(source, -1)).mean() > 30


@pytest.mark.parametrize(
    ("line", "clockwise"),
    [
        ("      Display Matrix: rotation of 90.00 degrees", 270),  # ffmpeg 7+
        ("      displaymatrix: rotation of -90.00 degrees", 90),  # ffmpeg 5/6
        ("      rotate          : 180", 180),  # ffmpeg 4 metadata tag
        ("      handler_name    : VideoHandler", 0),
    ],
)
def test_rotation_parsing_across_ffmpeg_versions(line, clockwise):
    assert media._rotation_cw([line]) == clockwise


# --------------------------------------------------------------------------- images


def test_read_real_images():
    astronaut = media.read_image(ASTRONAUT)
    assert astronaut.shape == (512, 512, 3) and astronaut.dtype == np.uint8 and astronaut.flags.c_contiguous
    with Image.open(ASTRONAUT) as im:
        assert np.array_equal(astronaut, np.asarray(im.convert("RGB")))
    info = media.probe(HOPPER)
    assert (info.kind, info.codec, info.frame_count, info.fps) == ("image", "jpeg", 1, 0.0)
    assert media.read_image(HOPPER).shape == (info.height, info.width, 3)


def _decoded_both_ways(path: Path, count: int = 12) -> tuple[media.MediaInfo, np.ndarray, np.ndarray, list]:
    """(info, RGB frames converted here from yuv420p, RGB frames from ffmpeg's rgb24, the YUV frames)."""
    info = media.probe(path)
    yuv_frames = [f for _, f in zip(range(count), media.iter_frames(path, info))]
    rgb = [f.image for _, f in zip(range(count), media.iter_frames(path, dataclasses.replace(info, yuv_matrix="")))]
    return info, np.stack([f.image for f in yuv_frames]).astype(int), np.stack(rgb).astype(int), yuv_frames


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
def test_yuv_frames_convert_as_ffmpeg_does(tmp_path, matrix):
    """Frames decoded as yuv420p and converted here match ffmpeg's own rgb24 within rounding,
    for an untagged (BT.601) and a BT.709-tagged stream; the other matrix would not."""
    clip = tmp_path / f"{matrix}.mp4"
    tags = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"] if matrix == "bt709" else []
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-frames:v", "12",
           "-vf", f"scale=out_color_matrix={matrix}", *tags, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip))
    info, ours, theirs, frames = _decoded_both_ways(clip)
    assert info.yuv_matrix == matrix and frames[0].yuv is not None
    difference = np.abs(ours - theirs)
    assert difference.max() <= 3 and difference.mean() < 1.2
    other = dataclasses.replace(frames[0].yuv, matrix="bt709" if matrix == "bt601" else "bt601")
    assert np.abs(other.rgb().astype(int) - theirs[0]).max() > 10, "the matrix matters, so the test can fail"


@pytest.mark.parametrize(("stream", "matrix"), [
    (" (High) (avc1 / 0x31637661), yuv420p(progressive), 1280x720", "bt601"),  # untagged: swscale's BT.601
    (", yuv420p, 720x528 [SAR 1:1 DAR 15:11]", "bt601"),
    (", yuv420p(tv, bt709, progressive, left), 1920x1080", "bt709"),
    (", yuv420p(tv, bt709/bt709/bt709, top first), 1920x1080", "bt709"),
    (", yuv420p(tv, smpte170m/smpte170m/bt709), 720x480", "bt601"),  # the matrix is the first of three
    (", yuv420p(pc, bt709), 1280x720", ""),  # full range
    (", yuvj420p(pc), 640x480", ""),
    (", yuv420p10le(tv, bt2020nc/bt2020/smpte2084), 3840x2160", ""),
    (", yuv420p(tv, bt2020nc/bt2020/arib-std-b67), 1920x1080", ""),
    (", yuv444p(tv, bt709), 1280x720", ""),
])
def test_which_streams_decode_as_yuv(stream, matrix):
    assert media._yuv_matrix(stream) == matrix


def test_yuv420p_of_odd_size_comes_as_rgb_from_ffmpeg(tmp_path):
    """swscale converts odd sizes on a path that interpolates chroma (up to 219 levels off the
    nearest-chroma conversion at colour edges): those frames keep coming as rgb24."""
    clip = tmp_path / "odd.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=65x47:rate=10", "-frames:v", "5", "-c:v", "ffv1",
           "-pix_fmt", "yuv420p", str(clip))
    info = media.probe(clip)
    frames = list(media.iter_frames(clip, info))
    assert info.yuv_matrix == "" and len(frames) == 5 and frames[0].yuv is None
    assert frames[0].image.shape == (47, 65, 3)


def test_crops_and_thumbnails_from_yuv_planes_match_the_rgb_image(megamind_frames):
    frame = next(f for f in media.iter_frames(MEGAMIND) if f.index == 120)
    assert frame.yuv is not None
    rgb = megamind_frames[120].image if megamind_frames[120].yuv is None else frame.image
    warp = np.array([[0.5, 0.05, -270.0], [-0.05, 0.5, -130.0]])  # the lower right, turned, and beyond its edge
    from_planes = frame.crop_rgb(warp, (192, 192)).astype(int)
    from_rgb = media.Frame(0, 0.0, rgb).crop_rgb(warp, (192, 192)).astype(int)
    inside = cv2.warpAffine(np.ones(rgb.shape[:2], np.uint8), warp, (192, 192), flags=cv2.INTER_NEAREST) > 0
    assert 0.2 < inside.mean() < 0.9
    difference = np.abs(from_planes - from_rgb)[inside]
    assert difference.mean() < 1.5 and np.percentile(difference, 99) <= 8  # chroma resampled from half size
    assert (from_planes[~cv2.dilate(inside.astype(np.uint8), np.ones((5, 5))).astype(bool)] <= 2).all(), \
        "black beyond the frame's edge, as cv2.warpAffine"
    assert np.abs(frame.coarse_rgb(128).astype(int) - media.Frame(0, 0.0, rgb).coarse_rgb(128)).mean() < 3


@pytest.mark.parametrize("decoded", ["yuv420p", "rgb24"])
def test_i420_crops_are_the_rgb_crops_in_yuv(megamind_frames, decoded):
    """crop_i420 (planes warped as they are, or an RGB frame converted) converts back to
    crop_rgb's picture; the chroma siting is right, or the colour edges would be off."""
    frame = next(f for f in media.iter_frames(MEGAMIND) if f.index == 120)
    if decoded == "rgb24":
        frame = media.Frame(0, 0.0, frame.image)
    warp = np.array([[0.9, 0.1, -200.0], [-0.1, 0.9, -60.0]])
    i420 = frame.crop_i420(warp, (256, 192), cv2.BORDER_REFLECT)
    assert i420.shape == (288, 256)
    y, u, v = media.i420_planes(i420)
    back = media.YuvImage(y, u, v, "bt601").rgb().astype(int)  # the example is untagged: BT.601
    difference = np.abs(back - frame.crop_rgb(warp, (256, 192), cv2.BORDER_REFLECT))
    assert difference.mean() < 2.5 and np.percentile(difference, 95) <= 8
    shifted = media.YuvImage(y, np.roll(u, 2, axis=1), np.roll(v, 2, axis=1), "bt601").rgb().astype(int)
    assert np.abs(shifted - frame.crop_rgb(warp, (256, 192), cv2.BORDER_REFLECT)).mean() > difference.mean() + 0.5


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
def test_rgb_to_i420_keeps_thin_colour_lines(matrix):
    """Grey stays grey through rgb_to_i420 and YuvImage; a 1 px red line on an odd column keeps
    its colour in the chroma beside it (sampling the even columns alone would lose it)."""
    rgb = np.full((16, 16, 3), 128, np.uint8)
    rgb[:, 5] = (255, 0, 0)
    y, u, v = media.i420_planes(media.rgb_to_i420(rgb, matrix))
    back = media.YuvImage(y, u, v, matrix).rgb().astype(int)
    assert np.abs(back[:, :3] - 128).max() <= 2, "flat grey stays grey"
    assert (v[:, 2:4] > 140).all() and (u[:, 2:4] < 124).all() and (u[:, [0, 1, 4]] == 128).all()
    assert (back[:, 4:7, 0] > back[:, 4:7, 1] + 50).all(), "the line and its chroma neighbours read red"
    with pytest.raises(ValueError, match="even size"):
        media.i420_planes(np.zeros((24, 15), np.uint8))


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
def test_video_writer_takes_i420_frames_unconverted(tmp_path, matrix):
    """I420 frames go into the file as they are (tagged BT.709 where they are): losslessly
    encoded, they decode back to the very same planes."""
    rng = np.random.default_rng(0)
    planes = cv2.resize(rng.integers(40, 200, (24, 32), np.uint8), (64, 48), interpolation=cv2.INTER_CUBIC)
    i420 = np.vstack([planes, np.full((24, 64), 100, np.uint8)])  # U then V: 32x24 each
    out = tmp_path / "yuv.mp4"
    with media.VideoWriter(out, 64, 48, 25.0, crf=0, yuv_matrix=matrix) as writer:
        for _ in range(5):
            writer.write(i420)
        with pytest.raises(ValueError, match="I420 frame"):
            writer.write(np.zeros((48, 64, 3), np.uint8))
    info = media.probe(out)
    assert info.yuv_matrix == matrix and (info.width, info.height) == (64, 48)
    frame = next(media.iter_frames(out, info))
    assert (frame.yuv.y == planes).all() and (frame.yuv.u == 100).all() and (frame.yuv.v == 100).all()
    with pytest.raises(ValueError, match="even size"):
        media.VideoWriter(tmp_path / "odd.mp4", 63, 48, 25.0, yuv_matrix=matrix)


def test_iter_frames_on_an_image_yields_one_frame():
    frames = list(media.iter_frames(ASTRONAUT))
    assert len(frames) == 1 and (frames[0].index, frames[0].timestamp_s) == (0, 0.0)
    assert np.array_equal(frames[0].image, media.read_image(ASTRONAUT))


@pytest.mark.parametrize("suffix", [".jpg", ".tiff", ".webp", ".png"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high as stored
    stored[:5, :5] = (255, 0, 0)  # red at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # display turned 90 degrees clockwise
    path = tmp_path / f"turned{suffix}"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    info = media.probe(path)
    assert (info.width, info.height) == (20, 40)
    rgb = media.read_image(path)
    assert rgb.shape == (40, 20, 3)
    assert rgb[1, -2, 0] > 200 and rgb[1, 1, 0] < 50  # the red corner moved to the top-right


def test_rgba_grayscale_cmyk_become_rgb(tmp_path):
    source = media.read_image(ASTRONAUT)
    alpha = np.full(source.shape[:2], 7, np.uint8)
    Image.fromarray(np.dstack([source, alpha]), "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(media.read_image(tmp_path / "rgba.png"), source)  # alpha dropped, colour untouched

    gray = np.asarray(Image.fromarray(source).convert("L"))
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert np.array_equal(media.read_image(tmp_path / "gray.png"), np.dstack([gray] * 3))

    Image.fromarray(source).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
    cmyk = media.read_image(tmp_path / "cmyk.jpg")
    assert cmyk.shape == source.shape and cmyk.dtype == np.uint8
    assert np.abs(cmyk.astype(int) - source).mean() < 12


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.arange(0, 65536, 256, dtype=np.uint16), (4, 1)) + 255  # 4x256, 255..65535
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # a 16-bit mode, not RGB
    rgb = media.read_image(path)
    assert rgb.shape == (4, 256, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 1], (ramp >> 8).astype(np.uint8))


def test_write_image_roundtrip_and_atomic(tmp_path):
    source = media.read_image(ASTRONAUT)[:100, :60]
    media.write_image(tmp_path / "out" / "a.png", source)
    assert np.array_equal(media.read_image(tmp_path / "out" / "a.png"), source)
    media.write_image(tmp_path / "out" / "a.jpg", source)
    assert np.abs(media.read_image(tmp_path / "out" / "a.jpg").astype(int) - source).mean() < 6
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "a.png"]
    with pytest.raises(OutputError, match="unknown image suffix"):
        media.write_image(tmp_path / "a.xyz", source)


# --------------------------------------------------------------------------- bad inputs


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "empty.mp4").touch()
    (tmp_path / "empty.png").touch()
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    (tmp_path / "text.png").write_text("this is not an image\n" * 20)
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "clip.faces.csv").write_text("frame,face_id\n1,0\n")
    return {
        "missing": tmp_path / "missing.mp4",
        "empty video": tmp_path / "empty.mp4",
        "empty image": tmp_path / "empty.png",
        "text video": tmp_path / "text.mp4",
        "text image": tmp_path / "text.png",
        "folder": tmp_path / "folder.mp4",
        "table": tmp_path / "clip.faces.csv",
    }


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "file not found"),
        ("empty video", "empty file (0 bytes)"),
        ("empty image", "empty file (0 bytes)"),
        ("text video", "not a video or image ffmpeg can decode"),
        ("text image", "not an image"),
        ("folder", "is a folder"),
        ("table", "a table, not media"),
    ],
)
@pytest.mark.parametrize("reader", [media.probe, media.iter_frames, media.read_image])
def test_bad_inputs_raise_input_error_naming_the_file(tmp_path, case, message, reader):
    if reader is media.read_image and case in ("text video", "table"):
        message = "not an image"  # read_image always asks Pillow
    path = _bad_inputs(tmp_path)[case]
    with pytest.raises(InputError, match=re.escape(message)) as caught:
        reader(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("keyint", ["250", "5"])  # one keyframe (nothing decodes) or many (some frames do)
def test_truncated_faststart_mp4_is_reported(tmp_path, keyint):
    whole = make_mp4(tmp_path / "whole.mp4", "-g", keyint, "-movflags", "+faststart", seconds=3, size="160x120")
    assert len(list(media.iter_frames(whole))) == 30
    cut = truncate_copy(whole, tmp_path / "cut.mp4")
    frames = media.iter_frames(cut)  # the index (at the front) still promises 30 frames
    with pytest.raises(InputError, match=r"truncated or corrupt video: decoding stopped at frame \d+ of ~30") as caught:
        list(frames)
    assert str(cut) in str(caught.value)


def test_truncated_mp4_without_index_is_reported_by_probe(tmp_path):
    cut = truncate_copy(make_mp4(tmp_path / "whole.mp4", seconds=3), tmp_path / "cut.mp4")
    with pytest.raises(InputError, match="moov atom not found"):
        media.probe(cut)


def test_truncated_matroska_is_reported(tmp_path):
    cut = truncate_copy(make_mp4(tmp_path / "whole.mkv", seconds=6, size="320x240"), tmp_path / "cut.mkv")
    assert media.probe(cut).frame_count == 60  # the header keeps the whole duration
    with pytest.raises(InputError, match=r"truncated or corrupt video: decoding stopped at frame \d+ of ~60 "
                                         r"\(.*File ended prematurely\)"):
        list(media.iter_frames(cut))


@pytest.mark.parametrize("fraction", [0.084, 0.4])
def test_truncated_megamind_is_reported(tmp_path, fraction):
    """Cut to 100 KB, the AVI decodes 14 frames without one error (its index went with the end,
    so ffmpeg takes it for a 1 s video); its RIFF header still says how long it was."""
    cut = truncate_copy(MEGAMIND, tmp_path / "cut.avi", fraction)
    expected = rf"truncated file: its header says {MEGAMIND.stat().st_size} bytes but it holds {cut.stat().st_size}"
    with pytest.raises(InputError, match=expected) as caught:
        media.probe(cut)
    assert str(cut) in str(caught.value)
    with pytest.raises(InputError, match="truncated file"):
        list(media.iter_frames(cut))


def test_an_image_named_like_a_video_is_an_image(tmp_path):
    mislabelled = tmp_path / "still.mp4"
    shutil.copy(ASTRONAUT, mislabelled)
    info = media.probe(mislabelled)
    assert (info.kind, info.width, info.height, info.frame_count) == ("image", 512, 512, 1)
    (frame,) = media.iter_frames(mislabelled)
    assert np.array_equal(frame.image, media.read_image(ASTRONAUT))


def test_pixel_cap(monkeypatch):
    monkeypatch.delenv("FACECLI_MAX_PIXELS", raising=False)
    assert media.max_pixels() == 100_000_000
    monkeypatch.setenv("FACECLI_MAX_PIXELS", "200000")  # between 1x and 2x astronaut: our own check
    with pytest.raises(InputError, match=r"512x512 = 0.262 MP, over the 0.2 MP cap; set FACECLI_MAX_PIXELS"):
        media.read_image(ASTRONAUT)
    with pytest.raises(InputError, match="512x512"):
        media.probe(ASTRONAUT)
    with pytest.raises(InputError, match=r"video is 720x528 = 0.38 MP, over the 0.2 MP cap"):
        media.iter_frames(MEGAMIND)
    monkeypatch.setenv("FACECLI_MAX_PIXELS", "1000")  # over 2x: Pillow's own guard fires first
    with pytest.raises(InputError, match=r"0.262 MP, over the 0.001 MP cap") as caught:
        media.read_image(ASTRONAUT)
    assert str(ASTRONAUT) in str(caught.value)
    monkeypatch.setenv("FACECLI_MAX_PIXELS", "lots")
    with pytest.raises(UsageError, match="FACECLI_MAX_PIXELS"):
        media.max_pixels()


# --------------------------------------------------------------------------- process hygiene


def test_early_close_leaves_no_ffmpeg_process():
    frames = media.iter_frames(MEGAMIND)
    for frame in frames:
        if frame.index == 2:
            break
    assert ffmpeg_children(), "ffmpeg should still be running mid-video"
    frames.close()
    assert ffmpeg_children() == []


# --------------------------------------------------------------------------- writing video


@pytest.mark.parametrize("frames_expected", [None, 30, 40], ids=["muxed after", "inline", "fewer written"])
def test_video_writer_roundtrip_with_audio(tmp_path, frames_expected):
    audio = shutil.copy(CLIPS["0870"][0], tmp_path / "speech.wav")
    out = tmp_path / "clip.mp4"
    # Fewer frames than expected still give audio cut to them.
    with media.VideoWriter(out, 65, 47, 30.0, audio_from=audio, frames_expected=frames_expected) as writer:
        for k in range(30):
            writer.write(np.full((47, 65, 3), 8 * k, np.uint8))
    info = media.probe(out)
    assert info.has_audio and info.codec == "h264"
    assert (info.width, info.height) == (66, 48)  # padded to even
    assert info.frame_count == 30 and info.duration_s == pytest.approx(1.0, abs=0.05)  # audio cut to the video
    samples, rate = load_audio(out)
    assert len(samples) / rate == pytest.approx(1.0, abs=0.07)  # within one AAC frame (64 ms at 16 kHz)
    frames = list(media.iter_frames(out))
    assert len(frames) == 30
    assert abs(int(frames[20].image[10, 10, 1]) - 160) < 6
    assert int(frames[20].image[-1, -1].max()) < 20  # the padded corner is black
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "speech.wav"]


def _levels(path: Path, step: int) -> list[int]:
    """Which frame each decoded frame is, for frames written as flat grey ``step * k``."""
    return [round(int(f.image[20, 20, 1]) / step) for f in media.iter_frames(path)]


def test_timed_frames_are_resampled_to_the_constant_rate(tmp_path):
    """Frames given with their times land at them: output frame n shows the frame on screen at
    n / fps after the first one's time (each time rounded to the nearest output frame), repeated
    over gaps; of two that round to one output frame, the later shows."""
    out = tmp_path / "vfr.mp4"
    times_s = 1.25 + np.array([0.0, 0.1, 0.4, 0.45, 0.5, 0.7])  # 0.45 rounds to 0.5, where a later frame starts
    with media.VideoWriter(out, 64, 48, 10.0, crf=0) as writer:
        for k, time_s in enumerate(times_s):
            writer.write(np.full((48, 64, 3), 30 * k, np.uint8), time_s)
    assert _levels(out, 30) == [0, 1, 1, 1, 2, 4, 4, 5]
    assert [f.timestamp_s for f in media.iter_frames(out)] == pytest.approx(np.arange(8) / 10)


def test_timed_frames_at_the_rate_give_the_untimed_file(tmp_path):
    """Frames 1/fps apart (times rounded to the millisecond, as Matroska stores them) give one
    output frame each: the very file that the same frames without times give."""
    frames = [np.random.default_rng(k).integers(0, 256, (48, 64, 3), np.uint8) for k in range(30)]
    fps = 30000 / 1001
    audio = shutil.copy(CLIPS["0880"][0], tmp_path / "speech.wav")
    for name, times_s in (("untimed", [None] * 30), ("timed", [round(0.042 + k / fps, 3) for k in range(30)])):
        with media.VideoWriter(tmp_path / f"{name}.mp4", 64, 48, fps, audio_from=audio, frames_expected=30) as writer:
            for frame, time_s in zip(frames, times_s):
                writer.write(frame, time_s)
    assert (tmp_path / "timed.mp4").read_bytes() == (tmp_path / "untimed.mp4").read_bytes()


def test_timed_writes_refuse_untimed_frames_and_overruns(tmp_path):
    with pytest.raises(ValueError, match="every frame's timestamp_s or none"):
        with media.VideoWriter(tmp_path / "mixed.mp4", 32, 32, 25.0) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8), 0.0)
            writer.write(np.zeros((32, 32, 3), np.uint8))
    audio = shutil.copy(CLIPS["0880"][0], tmp_path / "speech.wav")
    with pytest.raises(ValueError, match="more frames than frames_expected=2"):  # the gap makes 3
        with media.VideoWriter(tmp_path / "long.mp4", 32, 32, 25.0, audio_from=audio, frames_expected=2) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8), 0.0)
            writer.write(np.zeros((32, 32, 3), np.uint8), 0.08)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speech.wav"]
    assert ffmpeg_children() == []


def test_video_writer_refuses_more_frames_than_expected(tmp_path):
    audio = shutil.copy(CLIPS["0880"][0], tmp_path / "speech.wav")
    with pytest.raises(ValueError, match="more frames than frames_expected=2"):
        with media.VideoWriter(tmp_path / "clip.mp4", 32, 32, 25.0, audio_from=audio, frames_expected=2) as writer:
            for _ in range(3):
                writer.write(np.zeros((32, 32, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speech.wav"]


def test_video_writer_without_audio_source_audio(tmp_path):
    out = tmp_path / "silent.mp4"
    with media.VideoWriter(out, 32, 32, 24000 / 1001, audio_from=ASTRONAUT) as writer:
        for _ in range(5):
            writer.write(np.zeros((32, 32, 3), np.uint8))
    info = media.probe(out)
    assert not info.has_audio and info.fps == pytest.approx(24000 / 1001)


def test_video_writer_exception_leaves_nothing(tmp_path):
    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with media.VideoWriter(out, 64, 48, 10) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            assert list(tmp_path.iterdir()), "the temporary file should exist while writing"
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    assert ffmpeg_children() == []


def test_video_writer_ffmpeg_failure_is_output_error(tmp_path):
    out = tmp_path / "clip.unknownformat"
    with pytest.raises(OutputError, match=str(out)):
        with media.VideoWriter(out, 64, 48, 10) as writer:
            for _ in range(3):
                writer.write(np.zeros((48, 64, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="48x64x3"):
        with media.VideoWriter(tmp_path / "x.mp4", 64, 48, 10) as writer:
            writer.write(np.zeros((64, 48, 3), np.uint8))  # transposed: a caller bug
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- small helpers


def test_is_image_path():
    assert media.is_image_path("a/B.JPG") and media.is_image_path(Path("x.tiff"))
    assert not media.is_image_path("clip.mp4") and not media.is_image_path("noext")


def test_images_too_long_on_a_side_are_refused_before_decoding(tmp_path):
    from PIL import Image

    panorama = tmp_path / "pano.png"
    Image.new("RGB", (media.MAX_SIDE_PX + 1, 8)).save(panorama)
    with pytest.raises(InputError, match="on a side"):
        media.probe(panorama)


def test_writer_thread_writes_in_order_and_reports_errors():
    written = []
    with media.WriterThread(written.append, lambda job: job * 2, depth=2) as writer:
        for job in range(50):
            writer.put(job)
    assert written == [2 * job for job in range(50)]

    def fails(job):
        if job == 3:
            raise ValueError("bad frame 3")
        return job

    with pytest.raises(ValueError, match="bad frame 3"):
        with media.WriterThread(lambda frame: None, fails) as writer:
            for job in range(10):
                writer.put(job)
    with pytest.raises(KeyError):  # the caller's own error leaves no thread waiting
        with media.WriterThread(lambda frame: None, lambda job: job, depth=1) as writer:
            writer.put(1)
            raise KeyError("caller")


def test_a_header_is_read_once_while_the_file_is_unchanged(tmp_path, monkeypatch):
    clip = shutil.copy(MEGAMIND, tmp_path / "clip.avi")
    media._header_text.cache_clear()
    runs = []
    real_run = media.subprocess.run
    monkeypatch.setattr(media.subprocess, "run", lambda cmd, **kw: runs.append(cmd) or real_run(cmd, **kw))
    first, again = media.probe(clip), media.probe(clip)
    assert first == again and len(runs) == 1
    with open(clip, "ab") as out:  # the file changes: its header is read again
        out.write(b"\0" * 16)
    media.probe(clip)
    assert len(runs) == 2


def test_a_bare_ffmpeg_name_is_looked_up_on_path(tmp_path, monkeypatch):
    (tmp_path / "ffmpeg").symlink_to(media.ffmpeg_exe())
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", "ffmpeg")
    media.ffmpeg_exe.cache_clear()
    try:
        assert media.ffmpeg_exe() == "ffmpeg" and media.ffmpeg_version().startswith("ffmpeg version")
    finally:
        monkeypatch.undo()
        media.ffmpeg_exe.cache_clear()


def test_a_time_base_read_as_a_rate_is_not_the_output_rate():
    info = media.probe(MEGAMIND)
    assert media.output_fps(info) == pytest.approx(info.fps)
    webm_without_a_rate = dataclasses.replace(info, fps=1000.0, base_fps=1000.0)  # "1k tbr"
    assert media.output_fps(webm_without_a_rate) == 60.0


def test_a_broken_frame_time_is_an_input_error_not_hours_of_still_frames(tmp_path):
    frame = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(InputError, match="jump"), media.VideoWriter(tmp_path / "x.mp4", 16, 16, 25.0) as writer:
        writer.write(frame, 0.0)
        writer.write(frame, 10_000.0)
    assert not list(tmp_path.iterdir())
