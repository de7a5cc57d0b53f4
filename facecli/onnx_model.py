"""Learned expression classifiers: any ONNX image classifier run on aligned face crops.

``classify --model PATH.onnx`` loads the model through onnxruntime and reads a YAML sidecar
beside it, ``PATH.yaml`` (or ``PATH.onnx.yaml``), that says how to feed it and what its
outputs mean::

    labels: [Anger, Contempt, Disgust, Fear, Happiness, Neutral, Sadness, Surprise]  # output order
    input_size: [224, 224]        # width, height px (at most 1024)
    layout: nchw                  # nchw | nhwc
    channels: rgb                 # rgb | bgr
    scale: 0.00392156862745098    # pixel values times this (1/255) ...
    mean: [0.485, 0.456, 0.406]   # ... then minus mean ...
    std: [0.229, 0.224, 0.225]    # ... then divided by std, per channel in `channels` order
    output: logits                # logits (softmax applied) | probabilities
    crop: {template: arcface, margin: 0.0}   # margin: extra border, fraction of the side
    expressions: {class_3: happiness}        # optional: label -> facecli expression
    ignore: [other]                          # optional: labels dropped, the rest renormalised

Only ``labels`` and ``input_size`` are required; the rest default to the values above except
scale 1/255, mean 0, std 1, no expressions and no ignore. Labels map to ``EXPRESSIONS``
case-insensitively, with the usual synonyms (happy, sad, angry, surprised, fearful, disgusted,
contemptuous); a label that maps to none must be named under ``expressions`` or ``ignore``.

Crops are aligned like ArcFace's: a similarity maps the five points (iris centres, nose tip,
mouth corners) onto its 112x112 template, scaled to the input size.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from .errors import BackendUnavailable, InputError
from .facemodel import five_points
from .formats import quick_hash
from .geometry import umeyama
from .results import EXPRESSIONS

# Lower-cased model label -> facecli expression.
SYNONYMS = {
    **{name: name for name in EXPRESSIONS},
    "happy": "happiness", "sad": "sadness", "surprised": "surprise", "fearful": "fear",
    "disgusted": "disgust", "angry": "anger", "contemptuous": "contempt",
}
# Five-point layouts as fractions of the crop's side, in facemodel.FIVE_POINT order.
TEMPLATES = {
    "arcface": np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]]) / 112.0,
}
LAYOUTS = ("nchw", "nhwc")
CHANNELS = ("rgb", "bgr")
OUTPUTS = ("logits", "probabilities")
FIELDS = ("labels", "input_size", "layout", "channels", "scale", "mean", "std", "output", "crop",
          "expressions", "ignore")
MAX_MODEL_BYTES = 2 * 1024**3  # protobuf's own limit; bigger is not a facial-expression net
MAX_SIDECAR_BYTES = 1 << 20
MAX_INPUT_PX = 1024
MAX_LABELS = 1000
BATCH = 32  # crops per run: enough to keep the CPU busy, small enough for big inputs
INPUT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
DOCS = "see docs/classify.md"


@dataclass(frozen=True)
class ModelSpec:
    """How to feed an ONNX classifier and read its output (the sidecar, validated)."""

    labels: tuple[str, ...]  # the model's class names, in output order
    targets: tuple[str | None, ...]  # each label's facecli expression; None: ignored
    input_size: tuple[int, int]  # (width, height) px
    layout: str = "nchw"
    channels: str = "rgb"
    scale: float = 1 / 255  # pixel value multiplier, applied before mean and std
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # in `channels` order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    output: str = "logits"
    crop: str = "arcface"  # a TEMPLATES key
    margin: float = 0.0  # extra border around the template, as a fraction of the side

    @classmethod
    def from_yaml(cls, path: str | Path) -> ModelSpec:
        """Read and check a sidecar; InputError naming it and the field for anything wrong."""
        path = Path(path)
        data = _read_yaml(path)
        unknown = sorted(str(key) for key in data if key not in FIELDS)
        if unknown:
            raise InputError(f"unknown field {unknown[0]!r}; the fields are {', '.join(FIELDS)}", path)
        field = _FieldReader(data, path)
        labels = field.labels()
        crop = field.get("crop", {})
        if not isinstance(crop, Mapping) or set(crop) - {"template", "margin"}:
            raise InputError(f"field 'crop' must be a mapping of template and margin, got {_short(crop)}", path)
        crop_field = _FieldReader(crop, path, "crop.")
        return cls(
            labels=labels,
            targets=_map_labels(labels, field.get("expressions", {}), field.get("ignore", []), path),
            input_size=field.input_size(),
            layout=field.choice("layout", LAYOUTS),
            channels=field.choice("channels", CHANNELS),
            scale=field.number("scale", 1 / 255, low=0.0, low_open=True),
            mean=field.triple("mean", 0.0),
            std=field.triple("std", 1.0, positive=True),
            output=field.choice("output", OUTPUTS),
            crop=crop_field.choice("template", tuple(TEMPLATES)),
            margin=crop_field.number("margin", 0.0, low=0.0, high=2.0),
        )


def sidecar_path(model_path: str | Path) -> Path:
    """The model's sidecar: ``PATH.yaml``, else ``PATH.onnx.yaml``; InputError if neither exists."""
    model_path = Path(model_path)
    candidates = (model_path.with_suffix(".yaml"), model_path.with_name(model_path.name + ".yaml"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"no sidecar {candidates[0].name}: write one beside the model with at least "
                     f"'labels: [...]' (its class names in output order) and 'input_size: [W, H]'; {DOCS}",
                     model_path)


def template_points(spec: ModelSpec) -> np.ndarray:
    """(5, 2) px: where the five points go in a crop of ``spec.input_size``.

    The template fills a square of the longer side, centred (so 96x112 gives ArcFace's original
    layout), shrunk about the centre by 1 + margin.
    """
    width, height = spec.input_size
    centre = np.array([width, height]) / 2
    return centre + (TEMPLATES[spec.crop] - 0.5) * max(width, height) / (1.0 + spec.margin)


def alignment_matrices(landmarks_478: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """(N, 2, 3): for each face, the similarity from image px to crop px (least squares on five points)."""
    points = five_points(np.asarray(landmarks_478, np.float64).reshape(-1, 478, np.shape(landmarks_478)[-1]))
    template = template_points(spec)
    matrices = np.empty((len(points), 2, 3))
    for i, face in enumerate(points[..., :2]):
        s, rot, t = umeyama(face, template)
        matrices[i] = np.column_stack([s * rot, t])
    return matrices


def align_crops(image_rgb: np.ndarray, landmarks_478: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """(N, height, width, 3) uint8: each face of ``landmarks_478`` (N, 478, 2+) px warped to the template."""
    size = tuple(spec.input_size)
    matrices = alignment_matrices(landmarks_478, spec)
    crops = [cv2.warpAffine(image_rgb, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
             for m in matrices]
    return np.stack(crops) if crops else np.zeros((0, size[1], size[0], 3), np.uint8)


class ImageClassifier:
    """An onnxruntime session and its spec; ``predict`` gives probabilities over EXPRESSIONS."""

    def __init__(self, session: Any, spec: ModelSpec, model_path: Path, sidecar: Path):
        self.session = session
        self.spec = spec
        self.path = model_path
        self.sidecar = sidecar
        (self._input,), (self._output,) = session.get_inputs(), session.get_outputs()
        self._dtype = INPUT_DTYPES[self._input.type]
        self._fixed_batch = _fixed(self._input.shape[0])
        self._batch = self._fixed_batch or BATCH
        # (labels, 8): sums each label's probability into its expression; ignored labels drop out.
        self._to_expressions = np.array([[target == name for name in EXPRESSIONS] for target in spec.targets],
                                        np.float64)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def predict(self, crops_rgb: np.ndarray) -> np.ndarray:
        """(N, 8) float32 probabilities over EXPRESSIONS for (N, height, width, 3) uint8 RGB crops.

        Rows sum to 1 (0 for expressions the model lacks; all 0 if a row's whole probability
        lies on ignored labels).
        """
        width, height = self.spec.input_size
        crops_rgb = np.asarray(crops_rgb)
        if crops_rgb.dtype != np.uint8 or crops_rgb.ndim != 4 or crops_rgb.shape[1:] != (height, width, 3):
            raise ValueError(f"expected (N, {height}, {width}, 3) uint8 crops, got {crops_rgb.shape} {crops_rgb.dtype}")
        probs = [self._run(crops_rgb[i:i + self._batch]) for i in range(0, len(crops_rgb), self._batch)]
        probs = np.concatenate(probs) if probs else np.zeros((0, len(self.labels)))
        mapped = probs @ self._to_expressions
        total = mapped.sum(axis=1, keepdims=True)
        return np.divide(mapped, total, out=np.zeros_like(mapped), where=total > 0).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        """What to record in output headers: the model file, its hash and the sidecar's settings."""
        # Lists, not tuples: headers are written as JSON and YAML.
        spec = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self.spec).items()}
        spec["targets"] = dict(zip(self.spec.labels, self.spec.targets))
        del spec["labels"]  # the targets' keys, in order
        return {"model": str(self.path.resolve()), "sha256_quick": quick_hash(self.path),
                "sidecar": str(self.sidecar.resolve()), **spec}

    def _run(self, crops: np.ndarray) -> np.ndarray:
        """(n, labels) float64 probabilities over the model's labels for one chunk."""
        count = len(crops)
        if self._fixed_batch and count < self._batch:  # a fixed batch: pad with copies, drop them after
            crops = np.concatenate([crops, np.repeat(crops[-1:], self._batch - count, axis=0)])
        feed = {self._input.name: self._preprocess(crops)}
        try:
            out = self.session.run([self._output.name], feed)[0]
        except _ort_errors() as exc:
            raise InputError(f"model failed to run ({_one_line(exc)}); check the sidecar against the model",
                             self.path) from exc
        out = np.asarray(out, np.float64).reshape(len(crops), -1)[:count]
        if out.shape[1] != len(self.labels):
            raise InputError(f"model gives {out.shape[1]} outputs per crop, the sidecar {len(self.labels)} labels",
                             self.path)
        if self.spec.output == "probabilities":
            return np.clip(out, 0.0, None)
        exp = np.exp(out - out.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def _preprocess(self, crops: np.ndarray) -> np.ndarray:
        x = crops[..., ::-1] if self.spec.channels == "bgr" else crops
        mean, std = np.float32(self.spec.mean), np.float32(self.spec.std)
        x = (x.astype(np.float32) * np.float32(self.spec.scale) - mean) / std
        if self.spec.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, self._dtype)


def load_classifier(model_path: str | Path) -> ImageClassifier:
    """Load an ONNX classifier and its sidecar; InputError or BackendUnavailable for anything wrong."""
    model_path = Path(model_path)
    _check_model_file(model_path)
    sidecar = sidecar_path(model_path)
    spec = ModelSpec.from_yaml(sidecar)
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(f"onnxruntime is not installed ({exc}); pip install 'facecli[onnx]'") from exc
    # CUDA when this onnxruntime build has it; the CPU always, as the fallback.
    providers = [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()]
    try:
        session = ort.InferenceSession(str(model_path), providers=[*providers, "CPUExecutionProvider"])
    except _ort_errors() as exc:
        raise InputError(f"not a model onnxruntime can load ({_one_line(exc)}); export it again", model_path) from exc
    _check_signature(session, spec, model_path)
    return ImageClassifier(session, spec, model_path, sidecar)


# --------------------------------------------------------------------------- checks


def _check_model_file(path: Path) -> None:
    if not path.is_file():
        raise InputError("model file not found; give the path of an .onnx file", path)
    size = path.stat().st_size
    if size == 0:
        raise InputError("model file is empty; export it again", path)
    if size > MAX_MODEL_BYTES:
        raise InputError(f"model file is {size / 1024**3:.1f} GB, over the 2 GB cap; use a smaller model", path)


def _check_signature(session: Any, spec: ModelSpec, path: Path) -> None:
    """One 4D float image input that fits the spec, one output of len(labels) classes."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise InputError(f"model has {len(inputs)} inputs and {len(outputs)} outputs; facecli runs models "
                         "with one image input and one class output", path)
    shape, kind = inputs[0].shape, inputs[0].type
    if kind not in INPUT_DTYPES:
        raise InputError(f"model input is {kind}; facecli feeds float, float16 or double images", path)
    if len(shape) != 4:
        raise InputError(f"model input has shape {shape}; facecli feeds 4D image batches", path)
    channel, h, w = (1, 2, 3) if spec.layout == "nchw" else (3, 1, 2)
    if _fixed(shape[channel]) not in (None, 3):
        raise InputError(f"model input {shape} has no 3 channels where layout {spec.layout} puts them; "
                         "check the sidecar's layout", path)
    width, height = spec.input_size
    if _fixed(shape[h]) not in (None, height) or _fixed(shape[w]) not in (None, width):
        raise InputError(f"model input {shape} does not fit the sidecar's input_size [{width}, {height}]", path)
    classes = _fixed(outputs[0].shape[-1]) if outputs[0].shape else None
    if classes not in (None, len(spec.labels)):
        raise InputError(f"model gives {classes} classes, the sidecar lists {len(spec.labels)} labels", path)


def _fixed(dim: Any) -> int | None:
    """A dimension's size, or None where the model leaves it dynamic (a name or nothing)."""
    return dim if isinstance(dim, int) and dim > 0 else None


@functools.cache
def _ort_errors() -> tuple[type[Exception], ...]:
    """What onnxruntime raises: its own types (each derives from Exception) and Python's."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    own = tuple(v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))
    return (*own, RuntimeError, ValueError, TypeError, OSError)


# --------------------------------------------------------------------------- sidecar fields


def _read_yaml(path: Path) -> dict[Any, Any]:
    if path.stat().st_size > MAX_SIDECAR_BYTES:
        raise InputError("sidecar is over 1 MB; it should hold a few settings", path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read sidecar ({_one_line(exc)}); fix its YAML", path) from exc
    if not isinstance(data, dict):
        raise InputError(f"sidecar must be a mapping of field: value; {DOCS}", path)
    return data


class _FieldReader:
    """Typed access to a sidecar mapping; every failure names the file and the field."""

    def __init__(self, data: Mapping[Any, Any], path: Path, prefix: str = ""):
        self.data, self.path, self.prefix = data, path, prefix

    def get(self, name: str, default: Any) -> Any:
        return self.data.get(name, default)

    def fail(self, name: str, expected: str) -> InputError:
        return InputError(f"field '{self.prefix}{name}' must be {expected}, got {_short(self.data.get(name))}",
                          self.path)

    def labels(self) -> tuple[str, ...]:
        labels = self.data.get("labels")
        if (not isinstance(labels, list) or not 0 < len(labels) <= MAX_LABELS
                or not all(isinstance(label, str) and label.strip() for label in labels)):
            raise self.fail("labels", "a list of the model's class names in output order")
        if len({label.strip().lower() for label in labels}) != len(labels):
            raise self.fail("labels", "names that differ (case-insensitively)")
        return tuple(labels)

    def input_size(self) -> tuple[int, int]:
        size = self.data.get("input_size")
        if not (isinstance(size, list) and len(size) == 2
                and all(_is_int(v) and 1 <= v <= MAX_INPUT_PX for v in size)):
            raise self.fail("input_size", f"[width, height] in px, each 1-{MAX_INPUT_PX}")
        return size[0], size[1]

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        value = self.data.get(name, options[0])
        if value not in options:
            raise self.fail(name, f"one of {', '.join(options)}")
        return value

    def number(self, name: str, default: float, low: float, high: float = math.inf, low_open: bool = False) -> float:
        value = self.data.get(name, default)
        if not (_is_number(value) and (low < value if low_open else low <= value) and value <= high):
            bounds = f"above {low}" if low_open else f"within {low}-{high}" if high < math.inf else f"{low} or more"
            raise self.fail(name, f"a number {bounds}")
        return float(value)

    def triple(self, name: str, default: float, positive: bool = False) -> tuple[float, float, float]:
        value = self.data.get(name, [default] * 3)
        if not (isinstance(value, list) and len(value) == 3 and all(_is_number(v) for v in value)
                and (not positive or all(v > 0 for v in value))):
            raise self.fail(name, "3 numbers above 0 (one per channel)" if positive else "3 numbers (one per channel)")
        return tuple(float(v) for v in value)


def _map_labels(labels: tuple[str, ...], explicit: Any, ignore: Any, path: Path) -> tuple[str | None, ...]:
    """Each label's facecli expression: explicit ``expressions`` first, then ``ignore``, then synonyms."""
    if not isinstance(explicit, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in explicit.items()):
        raise InputError(f"field 'expressions' must map model labels to facecli expressions, "
                         f"got {_short(explicit)}", path)
    if not isinstance(ignore, list) or not all(isinstance(label, str) for label in ignore):
        raise InputError(f"field 'ignore' must be a list of model labels, got {_short(ignore)}", path)
    for field, names in (("expressions", list(explicit)), ("ignore", ignore)):
        stray = [name for name in names if name not in labels]
        if stray:
            raise InputError(f"field '{field}' names {stray[0]!r}, which is not among the labels", path)
    both = set(explicit) & set(ignore)
    if both:
        raise InputError(f"label {sorted(both)[0]!r} is both under 'expressions' and 'ignore'; keep one", path)
    targets: list[str | None] = []
    for label in labels:
        if label in ignore:
            targets.append(None)
            continue
        target = SYNONYMS.get(explicit.get(label, label).strip().lower())
        if target is None:
            where = f"expressions maps it to {explicit[label]!r}" if label in explicit else "it is no known name"
            raise InputError(f"label {label!r} is none of facecli's expressions ({where}); map it to one of "
                             f"{', '.join(EXPRESSIONS)} under 'expressions:' or list it under 'ignore:'", path)
        targets.append(target)
    if not any(targets):
        raise InputError("every label is ignored; map at least one under 'expressions:'", path)
    return tuple(targets)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """onnxruntime's and YAML's messages span lines: one error, one line."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
