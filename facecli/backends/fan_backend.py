"""face-alignment's FAN (Bulat & Tzimiropoulos 2017): 2D-FAN-4, and 3D-FAN-4 with its depth
network, on torch's CPU, from the model directory's ``fan/checkpoints`` folder (the layout of a
torch hub folder, so face-alignment's own downloader fills it: docs/backends.md).

Weights are loaded without running code from them: face-alignment 1.5's state dicts with
``torch.load(weights_only=True)`` into the package's own network classes; the TorchScript
archives of face-alignment 1.2-1.4 with ``torch.jit.load``, from the user's folder only.
face-alignment's ``FaceAlignment`` class is not used: it would also load a face detector
(facecli brings its own) and compile the network. Its crop and heatmap decoding are used as
they are, so a face is read as the package reads it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import BackendUnavailable
from . import LandmarkModel, LandmarkSession, models
from .sparse68 import mesh_from_68

PACK_2D, PACK_3D = "fan", "fan3d"
CROP_PX = 256  # FAN's input
HEATMAP_PX = 64  # and output resolution
SPAN_PER_SCALE = 200.0  # face-alignment's crop spans 200 * scale px of the image
GAUSSIAN_SIGMA = 2  # the heatmaps face-alignment draws for the depth network


def _load_network(path: Path, state_dict_class: Any) -> Any:
    """A FAN or depth network from ``path``: TorchScript for ``.zip`` files, else a state dict."""
    import torch

    if path.suffix == ".zip":
        net = torch.jit.load(str(path), map_location="cpu")
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)  # the depth checkpoint nests it
        state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel
        net = state_dict_class(state)
        net.load_state_dict(state)
    return net.eval()


def _fan(state: dict[str, Any]) -> Any:
    from face_alignment.models import FAN

    # The stack depth is the number of hourglasses saved (2D/3D-FAN-4: four).
    return FAN(1 + max(int(m.group(1)) for k in state if (m := re.match(r"m(\d+)\.", k))))


def _depth(state: dict[str, Any]) -> Any:
    from face_alignment.models import ResNetDepth

    # Blocks per ResNet stage, as saved (the released network: 3, 8, 36, 3).
    layers = [1 + max(int(m.group(1)) for k in state if (m := re.match(rf"layer{i}\.(\d+)\.", k)))
              for i in range(1, 5)]
    return ResNetDepth(layers=layers)


class FANLandmarkModel(LandmarkModel):
    """2D-FAN-4: 68 iBUG points from heatmaps, filled into the 478-point layout (sparse68)."""

    PACK: ClassVar[str] = PACK_2D

    def __init__(self) -> None:
        weights = models.PACKS[self.PACK].files
        self.paths = [models.locate(self.PACK, w) for w in weights]
        if None in self.paths:  # problem() said they were there; one went away since
            raise BackendUnavailable(models.problem(self.PACK, *weights) or "missing FAN weights")
        try:
            self.nets = [_load_network(p, builder) for p, builder in zip(self.paths, (_fan, _depth))]
        except Exception as exc:  # noqa: BLE001 - pickle, zip and shape errors: one line naming the file
            raise BackendUnavailable(f"cannot load {', '.join(p.name for p in self.paths)} ({type(exc).__name__}: "
                                     f"{' '.join(str(exc).split())[:200]}); get the weights with: "
                                     f"{models.download_command(self.PACK)}") from exc

    @classmethod
    def problem(cls) -> str | None:
        return models.problem(cls.PACK, *models.PACKS[cls.PACK].files)

    @classmethod
    def weights_location(cls) -> str:
        return str(models.pack_dir(cls.PACK))

    def settings(self) -> dict[str, Any]:
        return {"weights": [p.name for p in self.paths]}

    def open_session(self, video: bool) -> LandmarkSession:
        return _FANSession(*self.nets)


class FAN3DLandmarkModel(FANLandmarkModel):
    """3D-FAN-4 and its depth network: 68 iBUG points with depth."""

    PACK = PACK_3D


class _FANSession(LandmarkSession):
    """Stateless: every frame's crop is placed by the caller (the last fit or a detection)."""

    def __init__(self, fan: Any, depth: Any = None):
        self.fan, self.depth = fan, depth

    def fit(self, image_rgb: np.ndarray, roi_xywh: np.ndarray) -> np.ndarray | None:
        import torch
        from face_alignment.utils import crop, draw_gaussian, get_preds_fromhm

        x, y, side = (float(v) for v in roi_xywh[:3])
        # facecli's crop square is about twice the face box, as face-alignment's own crop.
        center, scale = np.array([x + side / 2, y + side / 2]), side / SPAN_PER_SCALE
        patch = crop(image_rgb, center, scale).transpose(2, 0, 1).astype(np.float32) / 255.0
        inp = torch.from_numpy(patch)[None]
        with torch.inference_mode():
            heatmaps = self.fan(inp)
        heatmaps = heatmaps[-1] if isinstance(heatmaps, (list, tuple)) else heatmaps  # one per hourglass
        peaks = get_preds_fromhm(np.ascontiguousarray(heatmaps.numpy(), np.float32))[0]  # (1, 68, 2) heatmap px
        # Heatmap px to image px as face-alignment's transform, without its rounding to whole px.
        points = (peaks[0] / HEATMAP_PX - 0.5) * side + center
        if self.depth is not None:
            drawn = np.zeros((68, CROP_PX, CROP_PX), np.float32)
            for j, peak in enumerate(peaks[0] * (CROP_PX / HEATMAP_PX)):
                if peak[0] > 0 and peak[1] > 0:
                    drawn[j] = draw_gaussian(drawn[j], peak, GAUSSIAN_SIGMA)
            with torch.inference_mode():
                depth = self.depth(torch.cat([inp, torch.from_numpy(drawn)[None]], 1)).numpy().reshape(68, 1)
            points = np.column_stack([points, depth * side / CROP_PX])
        return mesh_from_68(points)
