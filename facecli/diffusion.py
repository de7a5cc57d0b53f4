"""``--renderer diffusers``: the geometric renderer's frames, their face refined by a diffusion model.

For each frame the geometric renderer (:mod:`facecli.portrait`) gives the image and the
target mesh. A square around the face is cut out at the model's own resolution and refined
by a Stable Diffusion 1.5-family model with a ControlNet (img2img at low ``strength``),
conditioned on the target mesh drawn the way the ControlNet was trained (``control_style``).
The result goes back through a feathered mask around the face: every pixel outside the mask
is the geometric renderer's, exactly.

- Identity: an IP-Adapter image prompt of the source face where its weights are in the model
  folder; always, the img2img input is the geometric frame, i.e. the source's own pixels.
- Flicker: every frame starts from the same noise (a generator reseeded per frame, and DDIM
  with eta 0 adds none afterwards), and with ``refine_every`` N only every Nth frame is
  refined: the frames between carry that refinement (its difference to the geometric frame)
  along the mesh's motion.
- Weights: the user's own, read from ``<model folder>/diffusion`` (docs/backends.md), as
  safetensors only and never downloaded.

torch and diffusers are imported only when a pipeline is loaded, so ``import facecli`` and the
geometric renderer stay as light and fast as they were.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .backends import models
from .errors import BackendUnavailable, UsageError
from .face_rig import FACE_OVAL
from .facemodel import IBUG68_FROM_MESH
from .meshwarp import MeshWarp, ring

RENDERERS = ("geometric", "diffusers")
CONTROL_STYLES = {
    "mediapipe_face": "MediaPipe face-mesh contours in the colours of face-mesh ControlNets "
                      "(CrucibleAI/ControlNetMediaPipeFace's annotator)",
    "openpose_face": "OpenPose's face: 68 points and the pupils as white dots on black "
                     "(OpenPose ControlNets, face keypoints)",
}
FOLDER = "diffusion"  # inside the model folder
BASE = "sd15"
IP_ADAPTER = "ip_adapter"
IP_ADAPTER_WEIGHTS = "ip-adapter_sd15.safetensors"
IP_ADAPTER_SCALE = 0.6  # enough to hold the identity, low enough to leave the ControlNet in charge
PACKAGES = ("torch", "diffusers", "transformers", "safetensors")
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
# Every file of a diffusers-layout base model (configs, then weights) that facecli reads.
BASE_CONFIGS = ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
                "tokenizer/tokenizer_config.json", "scheduler/scheduler_config.json")
BASE_WEIGHTS = ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                "text_encoder/model.safetensors")
CONTROLNET_CONFIGS = ("config.json",)
CONTROLNET_WEIGHTS = ("diffusion_pytorch_model.safetensors",)
IMAGE_ENCODER_FILES = ("image_encoder/config.json", "image_encoder/model.safetensors")  # IP-Adapter's CLIP
CROP_SCALE = 1.6  # the refined square's side, in face-oval extents: the feathered mask fits inside
MASK_GROWTH = 1.05  # the mask's hull around the face oval, grown about its centre
FEATHER = 0.04  # the mask's edge: a Gaussian of this sigma, in face-oval extents
CARRY_RING = 0.8  # the fixed ring of the carry warp, in face-oval extents from the centre
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class DiffusionOptions:
    """The diffusers renderer's settings (``animate``/``reenact`` ``--renderer diffusers``)."""

    strength: float = 0.3  # of img2img: how far from the geometric frame the face may go
    steps: int = 20  # of the full schedule; img2img runs strength x steps of them
    seed: int = 0  # of the one noise every frame of a video starts from
    device: str = "auto"  # auto (CUDA with fp16 where present, else CPU), cpu, cuda, cuda:N
    control_style: str = "mediapipe_face"
    refine_every: int = 1  # refine every Nth frame; the frames between carry its refinement
    prompt: str = "a photo of a person's face, natural skin, detailed eyes, natural teeth"
    guidance_scale: float = 4.0

    def __post_init__(self) -> None:
        if not 0 < self.strength <= 1:
            raise UsageError(f"--strength must be within (0, 1], got {self.strength}")
        if int(self.steps * self.strength) < 1:
            raise UsageError(f"--steps {self.steps} at --strength {self.strength} runs no denoising step; "
                             "raise either so that steps x strength >= 1")
        if self.control_style not in CONTROL_STYLES:
            raise UsageError(f"--control-style must be one of {', '.join(CONTROL_STYLES)}")
        if self.refine_every < 1:
            raise UsageError("--refine-every must be >= 1")
        if not _DEVICE.fullmatch(self.device):
            raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


# --------------------------------------------------------------------------- weights


def folder() -> Path:
    return models.model_dir() / FOLDER


@dataclass(frozen=True)
class Component:
    """One model in the diffusion folder: a diffusers-layout folder ``name/``, or (``one_file``)
    its weights in ``name.safetensors`` beside that folder, which then needs only the configs."""

    name: str
    configs: tuple[str, ...]
    weights: tuple[str, ...]
    one_file: bool = True

    @property
    def path(self) -> Path:
        return folder() / self.name

    @property
    def single_file(self) -> Path | None:
        candidate = folder() / f"{self.name}.safetensors"
        return candidate if self.one_file and candidate.is_file() else None

    def problem(self) -> str | None:
        """What is missing or refused (one line), or None."""
        needed = self.configs if self.single_file else self.configs + self.weights
        missing = next((name for name in needed if not (self.path / name).is_file()), None)
        if missing is None:
            return None
        pickle = self._pickle_instead(self.path / missing)
        if pickle:
            return (f"refusing {pickle}: a pickle checkpoint can run code when it loads; facecli reads "
                    "only .safetensors (convert it: docs/backends.md)")
        return f"missing {missing} in {self.path} (--renderer diffusers; layout: docs/backends.md)"

    def _pickle_instead(self, expected: Path) -> Path | None:
        """A pickle checkpoint where a safetensors file belongs: in its folder, or as the one file."""
        candidates = sorted(expected.parent.iterdir()) if expected.parent.is_dir() else []
        if self.one_file:
            candidates += [folder() / f"{self.name}{suffix}" for suffix in PICKLE_SUFFIXES]
        return next((p for p in candidates if p.suffix in PICKLE_SUFFIXES and p.is_file()), None)

    def found(self) -> str:
        return f"{self.single_file} (configs in {self.path})" if self.single_file else str(self.path)


def base_model() -> Component:
    return Component(BASE, BASE_CONFIGS, BASE_WEIGHTS)


def controlnet(style: str) -> Component:
    return Component(f"controlnet-{style}", CONTROLNET_CONFIGS, CONTROLNET_WEIGHTS)


def ip_adapter() -> Component:
    """Optional: used as soon as its folder exists (and then it must be complete)."""
    return Component(IP_ADAPTER, IMAGE_ENCODER_FILES[:1], (IP_ADAPTER_WEIGHTS, IMAGE_ENCODER_FILES[1]),
                     one_file=False)


def packages_problem() -> str | None:
    missing = [name for name in PACKAGES if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    torch = "torch " if "torch" in missing else ""  # the extra names no torch build: the user picks one
    return f"the {', '.join(missing)} package{'s are' if len(missing) > 1 else ' is'} not installed; " \
           f"pip install {torch}'facecli[diffusion]'"


def problem(style: str) -> str | None:
    """Why ``--renderer diffusers`` with ``style`` cannot run here (one line), or None."""
    parts = [base_model(), controlnet(style)] + ([ip_adapter()] if ip_adapter().path.is_dir() else [])
    return packages_problem() or next(filter(None, (part.problem() for part in parts)), None)


def inventory() -> list[tuple[str, str | None, str]]:
    """(model, why it cannot be used or None, where it is or is looked for) per model of the
    diffusion folder, for ``facecli doctor``."""
    parts = [base_model(), *(controlnet(style) for style in CONTROL_STYLES), ip_adapter()]
    return [(part.name, packages_problem() or part.problem(), part.found()) for part in parts]


def require(options: DiffusionOptions) -> None:
    """Fail before a batch starts (one line, exit 2) when the renderer cannot run here."""
    reason = problem(options.control_style)
    if reason:
        raise BackendUnavailable(f"--renderer diffusers cannot run: {reason}")
    device(options.device)


def device(name: str) -> tuple[Any, Any]:
    """(torch device, dtype): CUDA in fp16 where asked for or (auto) present, else the CPU in fp32."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(f"--device {name}: torch {torch.__version__} sees no CUDA device here")
    return torch.device(name), torch.float16 if name.startswith("cuda") else torch.float32


# --------------------------------------------------------------------------- the pipeline


@dataclass
class Pipeline:
    pipe: Any  # StableDiffusionControlNetImg2ImgPipeline
    device: Any
    identity: bool  # an IP-Adapter is loaded
    resolution: int  # px: the square the model works at (512 for SD 1.5)
    warned: bool = False  # the CPU's one warning line is out


def _quiet() -> None:
    """diffusers and transformers log warnings and progress bars of their own: facecli's
    output stays one line per problem."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (transformers_logging, diffusers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()


@functools.lru_cache(maxsize=1)
def load(model_folder: Path, style: str, device_name: str) -> Pipeline:
    """The pipeline from ``model_folder`` (once per process and settings: a batch of portraits
    loads it once). Files only, safetensors only: ``local_files_only`` and ``use_safetensors``."""
    reason = problem(style)
    if reason:
        raise BackendUnavailable(f"--renderer diffusers cannot run: {reason}")
    where, dtype = device(device_name)
    _quiet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return _load(style, where, dtype)


def _load(style: str, where: Any, dtype: Any) -> Pipeline:
    from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetImg2ImgPipeline

    # torch_dtype: diffusers 0.30 knows no other name; later releases take it with a FutureWarning
    control = _from_files(ControlNetModel, controlnet(style), torch_dtype=dtype)
    pipe = _from_files(StableDiffusionControlNetImg2ImgPipeline, base_model(), controlnet=control, safety_checker=None,
                       feature_extractor=None, requires_safety_checker=False, torch_dtype=dtype)
    # DDIM with eta 0 adds no noise after the first: the same seed gives every frame the same noise.
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    identity = ip_adapter().path.is_dir()
    if identity:
        _load_ip_adapter(pipe, dtype)
    pipe.to(where)
    pipe.set_progress_bar_config(disable=True)
    return Pipeline(pipe, where, identity, pipe.unet.config.sample_size * pipe.vae_scale_factor)


def _from_files(cls: Any, part: Component, **settings: Any) -> Any:
    """A folder through ``from_pretrained``; one file through ``from_single_file``, its configs
    from the folder of the same name (so nothing is looked up online)."""
    if part.single_file:
        return cls.from_single_file(str(part.single_file), config=str(part.path), local_files_only=True, **settings)
    return cls.from_pretrained(part.path, local_files_only=True, use_safetensors=True, **settings)


def _load_ip_adapter(pipe: Any, dtype: Any) -> None:
    from transformers import CLIPVisionModelWithProjection

    adapter = ip_adapter().path
    # Registered first, so that load_ip_adapter does not load one itself (without use_safetensors).
    encoder = CLIPVisionModelWithProjection.from_pretrained(adapter / "image_encoder", local_files_only=True,
                                                            use_safetensors=True).to(dtype)
    pipe.register_modules(image_encoder=encoder)
    pipe.load_ip_adapter(str(adapter), subfolder="", weight_name=IP_ADAPTER_WEIGHTS, image_encoder_folder=None,
                         local_files_only=True)
    pipe.set_ip_adapter_scale(IP_ADAPTER_SCALE)


# --------------------------------------------------------------------------- images


def _face_box(mesh_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face oval's box: its centre and its (width, height), px."""
    oval = mesh_px[FACE_OVAL, :2]
    low, high = oval.min(axis=0), oval.max(axis=0)
    return (low + high) / 2, high - low


def crop_affine(mesh_px: np.ndarray, side: int) -> np.ndarray:
    """(2, 3) affine from the frame to a ``side`` square around the face (CROP_SCALE x its oval)."""
    centre, extent = _face_box(mesh_px)
    scale = side / (CROP_SCALE * float(extent.max()))
    return np.array([[scale, 0.0, side / 2 - scale * centre[0]], [0.0, scale, side / 2 - scale * centre[1]]])


def face_square(image: np.ndarray, mesh_px: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``side`` square around the face (:func:`crop_affine`) cut from ``image``, and the affine."""
    affine = crop_affine(mesh_px, side)
    return cv2.warpAffine(image, affine, (side, side), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE), affine


def face_mask(mesh_px: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) float32 weights 0-1: the face oval's hull (grown by MASK_GROWTH), feathered. Zero
    beyond the feather, so those pixels are never touched."""
    centre, extent = _face_box(mesh_px)
    grown = centre + MASK_GROWTH * (mesh_px[FACE_OVAL, :2] - centre)
    mask = np.zeros((height, width), np.float32)
    cv2.fillConvexPoly(mask, cv2.convexHull((grown * 16).round().astype(np.int32)), 1.0, cv2.LINE_AA,
                       shift=4)  # sub-pixel: the mask moves smoothly
    sigma = FEATHER * float(extent.max())
    return cv2.GaussianBlur(mask, (0, 0), sigma) if sigma > 0 else mask


# MediaPipe's face-mesh edges, and the colours of the face-mesh ControlNet's annotator, given
# here in RGB (the annotator draws them into a BGR canvas and then reverses the channels).
_MEDIAPIPE_PARTS = (("FACEMESH_FACE_OVAL", (10, 200, 10)), ("FACEMESH_LEFT_EYE", (10, 200, 180)),
                    ("FACEMESH_LEFT_EYEBROW", (10, 220, 180)), ("FACEMESH_RIGHT_EYE", (180, 200, 10)),
                    ("FACEMESH_RIGHT_EYEBROW", (180, 220, 10)), ("FACEMESH_LIPS", (10, 180, 10)))
_MEDIAPIPE_PUPILS = ((468, (250, 200, 10)), (473, (10, 200, 250)))  # the subject's right, left
_OPENPOSE_POINTS = np.concatenate([IBUG68_FROM_MESH, [468, 473]])  # OpenPose's 70 face points


def control_image(points_px: np.ndarray, side: int, style: str) -> np.ndarray:
    """(side, side, 3) uint8 RGB: the mesh (px of that square) drawn as ``style``'s ControlNet saw
    its training data. Line widths and dots are those of its annotator at 512 px, scaled."""
    canvas = np.zeros((side, side, 3), np.uint8)
    unit = side / 512
    xy = np.floor(points_px[:, :2]).astype(np.int32)
    if style == "openpose_face":
        for x, y in xy[_OPENPOSE_POINTS]:
            cv2.circle(canvas, (int(x), int(y)), max(1, round(3 * unit)), (255, 255, 255), -1)
        return canvas
    from mediapipe.python.solutions import face_mesh_connections as edges

    width = max(1, round(2 * unit))  # the annotator's line thickness and pupils' half width, both 2
    for name, colour in _MEDIAPIPE_PARTS:
        for a, b in getattr(edges, name):
            cv2.line(canvas, (int(xy[a, 0]), int(xy[a, 1])), (int(xy[b, 0]), int(xy[b, 1])), colour, width)
    for index, colour in _MEDIAPIPE_PUPILS:
        x, y = xy[index]
        canvas[max(y - width, 0):y + width, max(x - width, 0):x + width] = colour
    return canvas


def flicker(frames: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """Mean absolute difference between consecutive frames inside the face (mask > 0.5), in grey
    levels: the measure of flicker reported in docs/benchmarks.md (compare it with the geometric
    renderer's on the same motion)."""
    diffs = [np.abs(b.astype(np.float32) - a.astype(np.float32))[m > 0.5].mean()
             for a, b, m in zip(frames, frames[1:], masks[1:])]
    return float(np.mean(diffs)) if diffs else 0.0


# --------------------------------------------------------------------------- the refiner


@dataclass
class _Key:
    """The last refined frame: its refinement (refined - geometric, float) and its mesh."""

    residual: np.ndarray
    mesh_px: np.ndarray
    warp: MeshWarp | None = None  # built on its first use: only when frames are carried


class DiffusionRefiner:
    """Refines the frames of one video, in order (``refine``); ``last_mask`` is the paste mask
    of the last frame, for measures."""

    def __init__(self, source: np.ndarray, source_mesh_px: np.ndarray, options: DiffusionOptions):
        self.options = options
        self.loaded = load(models.model_dir(), options.control_style, options.device)
        pipe = self.loaded.pipe
        guided = options.guidance_scale > 1
        self.prompt, self.negative = pipe.encode_prompt(options.prompt, self.loaded.device, 1, guided, "")
        self.identity = self._identity(source, source_mesh_px, guided) if self.loaded.identity else None
        self.frames = 0
        self.key: _Key | None = None
        self.last_mask: np.ndarray | None = None

    def _identity(self, source: np.ndarray, mesh_px: np.ndarray, guided: bool) -> list[Any]:
        """The IP-Adapter's embedding of the source face, once per video."""
        face, _ = face_square(source, mesh_px, self.loaded.resolution)
        return self.loaded.pipe.prepare_ip_adapter_image_embeds(face, None, self.loaded.device, 1, guided)

    def refine(self, frame: np.ndarray, mesh_px: np.ndarray) -> np.ndarray:
        """``frame`` (the geometric renderer's, uint8 RGB) with its face refined; ``mesh_px`` is
        its target mesh (478, 2+) in px."""
        h, w = frame.shape[:2]
        if self.frames % self.options.refine_every == 0:
            self.key = _Key(self._refined(frame, mesh_px) - frame.astype(np.float32), mesh_px)
            residual = self.key.residual
        else:
            residual = self._carried(mesh_px, w, h)
        self.frames += 1
        self.last_mask = face_mask(mesh_px, h, w)
        out = frame.astype(np.float32) + self.last_mask[..., None] * residual
        return np.clip(out.round(), 0, 255).astype(np.uint8)  # where the mask is 0: the frame's own values

    def _refined(self, frame: np.ndarray, mesh_px: np.ndarray) -> np.ndarray:
        """(h, w, 3) float32: the frame as the model refines its face square (valid near the face)."""
        import torch

        side, options = self.loaded.resolution, self.options
        crop, affine = face_square(frame, mesh_px, side)
        points = mesh_px[:, :2] @ affine[:, :2].T + affine[:, 2]
        control = control_image(points, side, options.control_style)
        start = time.perf_counter()
        image = self.loaded.pipe(
            prompt_embeds=self.prompt, negative_prompt_embeds=self.negative,
            image=crop[None].astype(np.float32) / 255, control_image=control[None].astype(np.float32) / 255,
            strength=options.strength, num_inference_steps=options.steps, guidance_scale=options.guidance_scale,
            generator=torch.Generator("cpu").manual_seed(options.seed),  # the same noise for every frame
            ip_adapter_image_embeds=self.identity, output_type="np").images[0]
        self._warn_on_cpu(time.perf_counter() - start)
        h, w = frame.shape[:2]
        return cv2.warpAffine((image * 255).astype(np.float32), affine, (w, h),
                              flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)

    def _carried(self, mesh_px: np.ndarray, width: int, height: int) -> np.ndarray:
        """The last refinement moved from its frame's mesh to this one (a dense mesh warp, with
        a fixed ring around the face: the refinement never reaches beyond the mask anyway)."""
        key = self.key
        if key.warp is None:
            centre, extent = _face_box(key.mesh_px)
            key.warp = MeshWarp(key.mesh_px, ring(centre, CARRY_RING * extent, 40), width, height)
        return key.warp.warp(key.residual, mesh_px)

    def _warn_on_cpu(self, seconds: float) -> None:
        if self.loaded.device.type != "cpu" or self.loaded.warned:
            return
        self.loaded.warned = True
        per_frame = seconds / self.options.refine_every
        print(f"warning: --renderer diffusers runs on the CPU: about {per_frame:.3g} s per frame "
              f"({self.options.steps} steps at strength {self.options.strength}, {self.loaded.resolution} px); "
              "a CUDA GPU (--device cuda) is far faster", file=sys.stderr, flush=True)
