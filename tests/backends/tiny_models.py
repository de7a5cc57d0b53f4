"""Tiny stand-ins for the optional backends' weights, with the real files' names and signatures.

No real weights can be had here, so these check loading, pre- and post-processing and the file
formats, not accuracy. Their outputs are fixed, so where a face lands in the image is known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facecli.backends import models
from facecli.facemodel import IBUG68_FROM_MESH, mean_face

# Where the tiny SCRFD "finds" the astronaut (tests/data/astronaut.png, 512 px): its 640 px
# input is that image scaled by 1.25. Box (x0, y0, x1, y1) and five points in image px.
ASTRONAUT_BOX = np.array([177.6, 75.2, 280.0, 190.4])
ASTRONAUT_FIVE = np.array([[201.5, 104.9], [245.8, 109.1], [220.4, 127.3], [205.0, 148.0], [236.0, 149.0]])
SCRFD_SCORE = 0.9
SCRFD_ANCHOR = (16, 18, 10, 0)  # stride, column, row, anchor of the one confident prediction


def face_68(extent: float = 0.6) -> np.ndarray:
    """The mean face's 68 iBUG points (x, y, z), centred and scaled so x and y span ``extent``
    of [-1, 1]: a frontal face as a landmark model would place it in its crop."""
    points = mean_face().vertices_mm[IBUG68_FROM_MESH]
    centre = (points.max(axis=0) + points.min(axis=0)) / 2
    return (points - centre) / (np.ptp(points[:, :2], axis=0).max() / 2) * extent


def _onnx_model(inputs, outputs, nodes, initializers, path: Path) -> Path:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _constant_outputs(input_name: str, shape: list, constants: dict[str, np.ndarray], path: Path) -> Path:
    """A graph whose outputs are constants plus 0 x the input's mean (so they depend on it)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ReduceMean", [input_name], ["level"], keepdims=0, name="level"),
             helper.make_node("Mul", ["level", "zero"], ["nothing"], name="nothing")]
    initializers = [numpy_helper.from_array(np.float32(0.0), "zero")]
    outputs = []
    for name, value in constants.items():
        initializers.append(numpy_helper.from_array(value.astype(np.float32), f"{name}_value"))
        nodes.append(helper.make_node("Add", [f"{name}_value", "nothing"], [name], name=f"out_{name}"))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)]
    return _onnx_model(inputs, outputs, nodes, initializers, path)


def scrfd(path: Path, confident: bool = True) -> Path:
    """det_10g.onnx's signature at a fixed 640 px: input ``input.1`` (1, 3, 640, 640); nine
    outputs, scores (N, 1), boxes (N, 4) and five points (N, 10) for strides 8, 16, 32 with
    two anchors per cell, distances in strides. One anchor holds the astronaut's face
    (``confident``), or none does."""
    scale, (stride, col, row, anchor) = 640 / 512, SCRFD_ANCHOR
    outputs = {}
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for s in (8, 16, 32):
            outputs[f"{kind}_{s}"] = np.zeros(((640 // s) ** 2 * 2, width), np.float32)
    index = ((row * (640 // stride)) + col) * 2 + anchor
    centre = np.array([col, row]) * stride
    if confident:
        outputs[f"score_{stride}"][index] = SCRFD_SCORE
        box = ASTRONAUT_BOX * scale
        outputs[f"bbox_{stride}"][index] = np.concatenate([centre - box[:2], box[2:] - centre]) / stride
        outputs[f"kps_{stride}"][index] = ((ASTRONAUT_FIVE * scale - centre) / stride).reshape(-1)
    return _constant_outputs("input.1", [1, 3, 640, 640], outputs, path)


def scrfd_dynamic(path: Path) -> Path:
    """det_10g.onnx's dynamic-size signature, whose every score is 0: nothing is ever found."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, outputs, initializers = [], [], []
    for s in (8, 16, 32):
        # (1, C, H/s, W/s) -> (H/s * W/s * 2, k): cells row by row, two anchors each, as SCRFD lays them out.
        for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
            name = f"{kind}_{s}"
            initializers.append(numpy_helper.from_array(np.zeros((2 * width, 3, 1, 1), np.float32), f"{name}_w"))
            initializers.append(numpy_helper.from_array(np.array([-1, width], np.int64), f"{name}_shape"))
            nodes += [
                helper.make_node("AveragePool", ["input.1"], [f"{name}_pool"], kernel_shape=[s, s], strides=[s, s]),
                helper.make_node("Conv", [f"{name}_pool", f"{name}_w"], [f"{name}_map"]),
                helper.make_node("Transpose", [f"{name}_map"], [f"{name}_t"], perm=[0, 2, 3, 1]),
                helper.make_node("Reshape", [f"{name}_t", f"{name}_shape"], [name]),
            ]
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, width]))
    order = [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in (8, 16, 32)]
    outputs.sort(key=lambda o: order.index(o.name))
    inputs = [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])]
    return _onnx_model(inputs, outputs, nodes, initializers, path)


def landmarks_68(path: Path) -> Path:
    """1k3d68.onnx's signature: input ``data`` (1, 3, 192, 192), output (1, 3309) = 1103 points
    x, y, z in [-1, 1] of the crop, the last 68 being the iBUG points; here the mean face's."""
    points = np.zeros((1103, 3), np.float32)
    points[-68:] = face_68()
    return _constant_outputs("data", [1, 3, 192, 192], {"fc1": points.reshape(1, -1)}, path)


def landmarks_106(path: Path) -> Path:
    """2d106det.onnx's signature: input ``data`` (1, 3, 192, 192), output (1, 212) = 106 points
    x, y in [-1, 1] of the crop; here the mean face's iBUG points where the 106 layout has them
    (the others at the crop's centre: facecli does not read them)."""
    from facecli.backends.insightface_backend import IBUG68_FROM_2D106

    points = np.zeros((106, 2), np.float32)
    points[IBUG68_FROM_2D106] = face_68()[:, :2]
    return _constant_outputs("data", [1, 3, 192, 192], {"fc1": points.reshape(1, -1)}, path)


def arcface(path: Path, seed: int = 0) -> Path:
    """w600k_r50.onnx's signature: input ``input.1`` (N, 3, 112, 112), output (N, 512), here
    a fixed random projection of the crop averaged over 8 px blocks (depends on the face)."""
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(seed).normal(0, 1, (3 * 14 * 14, 512)).astype(np.float32)
    nodes = [helper.make_node("AveragePool", ["input.1"], ["blocks"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("Flatten", ["blocks"], ["flat"]),
             helper.make_node("MatMul", ["flat", "projection"], ["683"])]
    inputs = [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [None, 3, 112, 112])]
    outputs = [helper.make_tensor_value_info("683", TensorProto.FLOAT, [None, 512])]
    return _onnx_model(inputs, outputs, nodes, [numpy_helper.from_array(weights, "projection")], path)


def buffalo_l(model_dir: Path, confident: bool = True) -> Path:
    """The four buffalo_l files facecli reads, in their folder under ``model_dir``."""
    folder = model_dir / models.PACKS["buffalo_l"].folder
    scrfd(folder / "det_10g.onnx", confident)
    landmarks_68(folder / "1k3d68.onnx")
    landmarks_106(folder / "2d106det.onnx")
    arcface(folder / "w600k_r50.onnx")
    return folder


# FAN: heatmap px (col, row) of each iBUG point, the mean face spread over the middle of the 64 px map.
FAN_PEAKS = np.rint(32 + face_68()[:, :2] * 20).astype(int)
FAN_DEPTH = face_68()[:, 2] * 40  # what the tiny depth network says, in 256 px crop units


def fan_heatmaps() -> np.ndarray:
    """(1, 68, 64, 64) heatmaps with a Gaussian peak at each FAN_PEAKS point."""
    yy, xx = np.mgrid[:64, :64]
    maps = [np.exp(-((xx - c) ** 2 + (yy - r) ** 2) / 2.0) for c, r in FAN_PEAKS]
    return np.array(maps, np.float32)[None]


def fan_torchscript(path: Path) -> Path:
    """A TorchScript archive shaped like face-alignment 1.4's FAN: (1, 3, 256, 256) -> (1, 68, 64, 64)."""
    import torch

    class TinyFAN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("maps", torch.from_numpy(fan_heatmaps()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.maps + 0 * x.mean()

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(TinyFAN()).save(str(path))
    return path


def depth_torchscript(path: Path) -> Path:
    """A TorchScript archive shaped like the 3D-FAN depth network: (1, 71, 256, 256) -> (1, 68)."""
    import torch

    class TinyDepth(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("depth", torch.from_numpy(FAN_DEPTH.astype(np.float32))[None])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.shape[1] == 71
            return self.depth + 0 * x.mean()

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(TinyDepth()).save(str(path))
    return path


def fan_state_dict(path: Path, seed: int = 0) -> Path:
    """face-alignment 1.5's format: a state dict of its own FAN class, here one hourglass of
    random weights (the released 2D-FAN-4 has four)."""
    import torch
    from face_alignment.models import FAN

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(FAN(1).state_dict(), str(path))
    return path
