"""``--renderer diffusers`` with tiny random models (tests/tiny_diffusion.py), nothing downloaded.

The models are saved in the layout users put their weights in and loaded through the same code.
What is checked: the video's size and length, pixels outside the face mask exactly as the
geometric renderer made them, one seed giving one video, the carry of ``refine_every``, and
one-line errors for missing, partial and pickled weights. Not the quality: random weights.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from facecli import diffusion, media  # noqa: E402
from facecli.backends import models  # noqa: E402
from facecli.diffusion import DiffusionOptions, DiffusionRefiner  # noqa: E402
from facecli.errors import BackendUnavailable, UsageError  # noqa: E402
from facecli.portrait import PortraitRenderer, load_portrait  # noqa: E402
from facecli.results import FACE_CONTROLS  # noqa: E402
from facecli.stages.animate import animate  # noqa: E402
from facecli.stages.reenact import reenact  # noqa: E402
from tests.backends.conftest import run_cli  # noqa: E402
from tests.conftest import ASTRONAUT, write_wav  # noqa: E402
from tests.tiny_diffusion import write_models  # noqa: E402

FAST = DiffusionOptions(steps=4, strength=0.5)  # two denoising steps
TWO_FRAMES = np.zeros(int(16000 * 2 / 25))  # of silence at 16 kHz: 2 frames at 25 frames/s


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder with the tiny base model and mediapipe_face ControlNet."""
    folder = tmp_path_factory.mktemp("models")
    write_models(folder)
    return folder


@pytest.fixture()
def model_dir(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(models.ENV_VAR, str(tiny))
    return tiny


@dataclass
class Recorder:
    """The frames a stage hands its video writer, and the refiner's masks, in order."""

    frames: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    calls: int = 0  # pipeline runs


@pytest.fixture()
def recorded(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    record = Recorder()
    write, refine, refined = media.VideoWriter.write, DiffusionRefiner.refine, DiffusionRefiner._refined

    def writing(self, frame, *timestamp_s):
        record.frames.append(frame.copy())
        return write(self, frame, *timestamp_s)

    def refining(self, frame, mesh):
        out = refine(self, frame, mesh)
        record.masks.append(self.last_mask)
        return out

    def running(self, frame, mesh):
        record.calls += 1
        return refined(self, frame, mesh)

    monkeypatch.setattr(media.VideoWriter, "write", writing)
    monkeypatch.setattr(DiffusionRefiner, "refine", refining)
    monkeypatch.setattr(DiffusionRefiner, "_refined", running)
    return record


def _run(make, record: Recorder, diffusion_options: DiffusionOptions | None) -> tuple[list, list]:
    record.frames, record.masks = [], []
    make(diffusion_options)
    return record.frames, record.masks


def _check_video(video: Path) -> None:
    info = media.probe(video)
    assert (info.width, info.height) == (64, 64) and info.frame_count == 2
    assert info.duration_s == pytest.approx(2 / 25, abs=1e-3)


def _check_renderers(make, video: Path, record: Recorder) -> None:
    """Geometric vs diffusers on the same job: equal outside the mask, changed inside; the same
    seed gives the same frames, another seed others."""
    geometric, _ = _run(make, record, None)
    refined, masks = _run(make, record, FAST)
    _check_video(video)
    assert len(refined) == len(masks) == len(geometric) == 2
    for plain, fine, mask in zip(geometric, refined, masks):
        outside = mask == 0
        assert outside.any() and mask.max() > 0.99
        assert np.array_equal(fine[outside], plain[outside])  # bit-exact outside the face
        assert np.abs(fine.astype(int) - plain)[~outside].max() > 0
    again, _ = _run(make, record, FAST)
    assert all(np.array_equal(a, b) for a, b in zip(refined, again))
    other, _ = _run(make, record, DiffusionOptions(steps=4, strength=0.5, seed=1))
    assert not np.array_equal(other[0], refined[0])


def test_animate_two_frames(model_dir: Path, tmp_path: Path, recorded: Recorder) -> None:
    audio = write_wav(tmp_path / "two.wav", TWO_FRAMES)
    video = tmp_path / "talk.mp4"
    _check_renderers(lambda d: animate(ASTRONAUT, audio, video, crop=True, size=64, diffusion=d), video, recorded)


@pytest.fixture(scope="module")
def driving(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two frames of the astronaut, the second moved: a driving video with one face track."""
    image = load_portrait(ASTRONAUT, crop=True, size=256).image
    video = tmp_path_factory.mktemp("driving") / "driving.mp4"
    with media.VideoWriter(video, 256, 256, 25.0) as writer:
        writer.write(image)
        writer.write(np.roll(image, 3, axis=0))
    return video


def test_reenact_two_frames(model_dir: Path, tmp_path: Path, driving: Path, recorded: Recorder) -> None:
    video = tmp_path / "driven.mp4"
    _check_renderers(lambda d: reenact(ASTRONAUT, driving, video, crop=True, size=64, diffusion=d), video, recorded)


def _frames(count: int = 3) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The cropped astronaut, its mesh, and ``count`` geometric frames (the jaw opening, the head
    turning) with their target meshes."""
    portrait = load_portrait(ASTRONAUT, crop=True, size=64)
    renderer = PortraitRenderer(portrait)
    frames = []
    for i in range(count):
        controls = np.zeros(len(FACE_CONTROLS))
        controls[FACE_CONTROLS.index("jaw_open")] = 0.4 * i
        pose = (controls, np.array([2.0 * i, 0.0, 0.0]), np.zeros(2))
        frames.append((renderer.render(*pose), renderer.rig.pose(*pose)))
    return portrait.image, portrait.landmarks_478, frames


def test_refine_every_carries_the_refinement(model_dir: Path, recorded: Recorder) -> None:
    source, mesh, frames = _frames(3)
    refiner = DiffusionRefiner(source, mesh, DiffusionOptions(steps=4, strength=0.5, refine_every=2))
    outputs = [refiner.refine(frame, points) for frame, points in frames]
    assert recorded.calls == 2  # frames 0 and 2
    carried, (frame, _), mask = outputs[1], frames[1], recorded.masks[1]
    assert np.array_equal(carried[mask == 0], frame[mask == 0])
    assert np.abs(carried.astype(int) - frame)[mask > 0.5].mean() > 1  # the refinement came along
    every = DiffusionRefiner(source, mesh, FAST)
    assert np.array_equal(every.refine(*frames[0]), outputs[0])  # a key frame is refined alike


def test_identity_from_an_ip_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_models(tmp_path, identity=True)
    monkeypatch.setenv(models.ENV_VAR, str(tmp_path))
    source, mesh, frames = _frames(1)
    refiner = DiffusionRefiner(source, mesh, FAST)
    assert refiner.loaded.identity and refiner.identity is not None
    out = refiner.refine(*frames[0])
    assert out.shape == source.shape and np.array_equal(out, DiffusionRefiner(source, mesh, FAST).refine(*frames[0]))


def test_a_controlnet_in_one_safetensors_file(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """The same weights as one file beside a config folder give the same frame as the folder."""
    source, mesh, frames = _frames(1)
    expected = DiffusionRefiner(source, mesh, FAST).refine(*frames[0])
    write_models(tmp_path, single_file=True)
    monkeypatch.setenv(models.ENV_VAR, str(tmp_path))
    assert diffusion.controlnet("mediapipe_face").single_file is not None
    assert np.array_equal(DiffusionRefiner(source, mesh, FAST).refine(*frames[0]), expected)


def test_a_base_model_in_one_file_goes_through_from_single_file(tiny: Path, tmp_path: Path, monkeypatch) -> None:
    """Only facecli's side: the file and its config folder reach ``from_single_file``, offline.
    (Converting an original-layout checkpoint is diffusers' own code; none can be made here.)"""
    from diffusers import StableDiffusionControlNetImg2ImgPipeline as Pipeline

    shutil.copytree(tiny, tmp_path, dirs_exist_ok=True)
    base, weights = tmp_path / "diffusion" / "sd15", tmp_path / "weights"
    (tmp_path / "diffusion" / "sd15.safetensors").write_bytes(b"")
    shutil.copytree(base, weights)
    for name in diffusion.BASE_WEIGHTS:
        (base / name).unlink()
    monkeypatch.setenv(models.ENV_VAR, str(tmp_path))
    assert diffusion.problem("mediapipe_face") is None  # the configs beside the one file suffice
    seen = {}

    def single_file(path: str, **settings):
        seen.update(settings, path=path)
        settings.pop("config")
        return Pipeline.from_pretrained(weights, **settings)

    monkeypatch.setattr(Pipeline, "from_single_file", single_file)
    diffusion.load.cache_clear()
    DiffusionRefiner(*_frames(1)[:2], FAST)
    assert seen["path"] == str(tmp_path / "diffusion" / "sd15.safetensors")
    assert seen["config"] == str(base) and seen["local_files_only"] is True


@pytest.mark.parametrize("remove, words", [
    ("diffusion/sd15/unet/diffusion_pytorch_model.safetensors", "missing unet/diffusion_pytorch_model.safetensors"),
    ("diffusion/sd15/tokenizer", "missing tokenizer/tokenizer_config.json"),
    ("diffusion/controlnet-mediapipe_face/config.json", "missing config.json"),
])
def test_a_partial_model_folder_names_the_file(tiny: Path, tmp_path: Path, monkeypatch, remove, words) -> None:
    shutil.copytree(tiny, tmp_path, dirs_exist_ok=True)
    target = tmp_path / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    monkeypatch.setenv(models.ENV_VAR, str(tmp_path))
    reason = diffusion.problem("mediapipe_face")
    assert words in reason and str(target.parent if target.is_file() else tmp_path / "diffusion") in reason
    with pytest.raises(BackendUnavailable, match=words):
        diffusion.load(tmp_path, "mediapipe_face", "cpu")


def test_missing_weights_and_pickles_are_one_line_exit_2(tiny: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    audio = write_wav(tmp_path / "two.wav", TWO_FRAMES)
    args = ("animate", str(ASTRONAUT), str(audio), "-o", str(tmp_path / "out.mp4"), "--renderer", "diffusers")
    empty = tmp_path / "empty"
    code, _, err = run_cli(monkeypatch, capsys, *args, "--model-dir", str(empty))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"missing model_index.json in {empty / 'diffusion' / 'sd15'}" in err
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny, pickled)
    unet = pickled / "diffusion" / "sd15" / "unet"
    (unet / "diffusion_pytorch_model.safetensors").rename(unet / "diffusion_pytorch_model.bin")
    code, _, err = run_cli(monkeypatch, capsys, *args, "--model-dir", str(pickled))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"refusing {unet / 'diffusion_pytorch_model.bin'}: a pickle checkpoint" in err
    (unet / "diffusion_pytorch_model.bin").rename(unet / "diffusion_pytorch_model.safetensors")
    (pickled / "diffusion" / "controlnet-openpose_face.ckpt").write_bytes(b"pickle")
    code, _, err = run_cli(monkeypatch, capsys, *args, "--model-dir", str(pickled), "--control-style", "openpose_face")
    assert code == 2 and "refusing" in err and "controlnet-openpose_face.ckpt" in err
    assert not (tmp_path / "out.mp4").exists()


def test_cli_animate_and_reenact(model_dir: Path, tmp_path: Path, driving: Path, monkeypatch, capsys) -> None:
    audio = write_wav(tmp_path / "two.wav", TWO_FRAMES)
    small = ("--crop", "--size", "64", "--renderer", "diffusers", "--steps", "4", "--strength", "0.5", "-q")
    code, _, err = run_cli(monkeypatch, capsys, "animate", str(ASTRONAUT), str(audio), "-o", str(tmp_path / "a.mp4"),
                           *small, "--refine-every", "2", "--seed", "3")
    assert code == 0, err
    _check_video(tmp_path / "a.mp4")
    code, _, err = run_cli(monkeypatch, capsys, "reenact", str(ASTRONAUT), str(driving), "-o", str(tmp_path / "r.mp4"),
                           *small, "--device", "cpu")
    assert code == 0, err
    _check_video(tmp_path / "r.mp4")
    settings = facecli_settings(tmp_path / "r.motion.parquet")
    assert settings["diffusion"]["device"] == "cpu" and settings["diffusion"]["strength"] == 0.5


def facecli_settings(path: Path) -> dict:
    from facecli.formats import read_header

    return read_header(path)["settings"]


def test_cli_usage_errors(tmp_path: Path, monkeypatch, capsys) -> None:
    audio = write_wav(tmp_path / "two.wav", TWO_FRAMES)
    args = ("animate", str(ASTRONAUT), str(audio), "-o", str(tmp_path / "out.mp4"))
    code, _, err = run_cli(monkeypatch, capsys, *args, "--strength", "0.5")
    assert code == 2 and "--strength needs --renderer diffusers" in err
    code, _, err = run_cli(monkeypatch, capsys, *args, "--renderer", "diffusers", "--steps", "2")
    assert code == 2 and "steps x strength" in err
    code, _, err = run_cli(monkeypatch, capsys, *args, "--renderer", "diffusers", "--device", "tpu")
    assert code == 2 and "--device" in err


def test_no_cuda_is_one_line(model_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendUnavailable, match="sees no CUDA device"):
        diffusion.require(DiffusionOptions(device="cuda"))


@pytest.mark.parametrize("settings, words", [
    ({"strength": 0.0}, "--strength"), ({"steps": 3, "strength": 0.3}, "steps x strength"),
    ({"control_style": "canny"}, "--control-style"), ({"refine_every": 0}, "--refine-every"),
])
def test_options_are_checked(settings: dict, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        DiffusionOptions(**settings)


def test_mask_and_control_images() -> None:
    _, mesh, frames = _frames(1)
    frame, points = frames[0]
    mask = diffusion.face_mask(points, *frame.shape[:2])
    nose = points[4, :2].astype(int)
    assert mask[nose[1], nose[0]] == 1 and mask[0, 0] == 0 and mask[-1, -1] == 0
    side = 128
    affine = diffusion.crop_affine(points, side)
    square = points[:, :2] @ affine[:, :2].T + affine[:, 2]
    assert square.min() > 0 and square.max() < side  # the face fits the square, with room for the mask
    drawn = {style: diffusion.control_image(square, side, style) for style in diffusion.CONTROL_STYLES}
    assert {tuple(c) for c in drawn["openpose_face"].reshape(-1, 3)} == {(0, 0, 0), (255, 255, 255)}
    colours = {tuple(c) for c in drawn["mediapipe_face"].reshape(-1, 3)}
    assert {(10, 200, 10), (10, 180, 10), (250, 200, 10), (10, 200, 250)} <= colours  # oval, lips, pupils


def test_flicker_measure() -> None:
    still = [np.full((8, 8, 3), 100, np.uint8)] * 3
    masks = [np.ones((8, 8), np.float32)] * 3
    assert diffusion.flicker(still, masks) == 0
    alternating = [np.full((8, 8, 3), v, np.uint8) for v in (100, 110, 100)]
    assert diffusion.flicker(alternating, masks) == 10


def test_importing_facecli_does_not_import_torch() -> None:
    code = ("import sys, facecli, facecli.cli, facecli.diffusion, facecli.stages.animate, facecli.stages.reenact; "
            "print(sorted({'torch', 'diffusers', 'transformers'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_missing_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diffusion.importlib.util, "find_spec", lambda name: None if name == "diffusers" else True)
    assert diffusion.problem("mediapipe_face") == \
        "the diffusers package is not installed; pip install 'facecli[diffusion]'"
