"""The ONNX expression classifier, on tiny models built here: channel means -> logits by a fixed MatMul."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import facecli
from facecli.errors import BackendUnavailable, InputError
from facecli.facemodel import five_points
from facecli.media import read_image
from facecli.onnx_model import (EXPRESSIONS, ModelSpec, align_crops, alignment_matrices, load_classifier,
                                template_points)

# The optional extra facecli[onnx]; without it these tests are skipped, not failed.
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ASTRONAUT = Path(__file__).parent / "data/astronaut.png"
SIZE = 32  # px: the test models' input side
GAIN = 5.0  # logit a full channel gives its expression
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
# Which label each colour channel drives, by facecli's names.
CHANNEL_TARGETS = ("happiness", "sadness", "surprise")
SHUFFLED = ("Surprised", "angry", "Happy", "neutral", "SAD", "fearful", "disgusted", "contemptuous")


def build_model(path: Path, labels: tuple[str, ...], channel_labels: tuple[str, ...], layout: str = "nchw",
                batch: int | str = "N", classes: int | None = None) -> Path:
    """A model whose logits are GAIN * (mean of channel c) on channel_labels[c], 0 elsewhere."""
    weights = np.zeros((3, classes or len(labels)), np.float32)
    for channel, label in enumerate(channel_labels):
        weights[channel, labels.index(label)] = GAIN
    shape = [batch, 3, SIZE, SIZE] if layout == "nchw" else [batch, SIZE, SIZE, 3]
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["means"], axes=[2, 3] if layout == "nchw" else [1, 2],
                          keepdims=0),
         helper.make_node("MatMul", ["means", "weights"], ["logits"])],
        "channel_means", [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, weights.shape[1]])],
        [numpy_helper.from_array(weights, "weights")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # what onnxruntime 1.1x and later all read
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_sidecar(model: Path, **fields) -> Path:
    sidecar = model.with_suffix(".yaml")
    sidecar.write_text(yaml.safe_dump({"input_size": [SIZE, SIZE], **fields}))
    return sidecar


def classifier_files(tmp_path: Path, labels=EXPRESSIONS, channel_labels=CHANNEL_TARGETS, name="model",
                     layout="nchw", batch="N", **fields) -> Path:
    model = build_model(tmp_path / f"{name}.onnx", tuple(labels), channel_labels, layout, batch)
    write_sidecar(model, labels=list(labels), layout=layout, **fields)
    return model


def solid(*colours: tuple[int, int, int]) -> np.ndarray:
    return np.stack([np.full((SIZE, SIZE, 3), colour, np.uint8) for colour in colours])


def softmax_share(others: int) -> float:
    """Probability of the one label at logit GAIN when `others` labels sit at 0."""
    return float(np.exp(GAIN) / (np.exp(GAIN) + others))


def column(name: str) -> int:
    return EXPRESSIONS.index(name)


class RecordingSession:
    """Wraps an onnxruntime session and records each run's batch size."""

    def __init__(self, session):
        self.session, self.batches = session, []

    def run(self, names, feed):
        self.batches.append(len(next(iter(feed.values()))))
        return self.session.run(names, feed)


# --------------------------------------------------------------------------- predictions


def test_solid_colours_give_their_expression(tmp_path):
    probs = load_classifier(classifier_files(tmp_path)).predict(solid(RED, GREEN, BLUE))
    assert probs.shape == (3, 8) and probs.dtype == np.float32
    assert [EXPRESSIONS[i] for i in probs.argmax(axis=1)] == list(CHANNEL_TARGETS)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(probs.max(axis=1), softmax_share(7), atol=1e-5)


def test_synonyms_and_shuffled_labels_give_facecli_order(tmp_path):
    reference = load_classifier(classifier_files(tmp_path, name="reference"))
    shuffled = load_classifier(classifier_files(tmp_path, SHUFFLED, ("Happy", "SAD", "Surprised")))
    crops = solid(RED, GREEN, BLUE, (200, 40, 90))
    np.testing.assert_allclose(shuffled.predict(crops), reference.predict(crops), atol=1e-6)
    assert shuffled.labels == SHUFFLED


def test_model_without_contempt_gives_it_zero(tmp_path):
    labels = tuple(name for name in EXPRESSIONS if name != "contempt")  # RAF-DB's seven
    probs = load_classifier(classifier_files(tmp_path, labels)).predict(solid(RED, GREEN))
    assert np.all(probs[:, column("contempt")] == 0.0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(probs[0, column("happiness")], softmax_share(6), atol=1e-5)


def test_explicit_expressions_and_ignored_label(tmp_path):
    labels = tuple(f"class_{i}" for i in range(9))
    explicit = {f"class_{i}": name for i, name in enumerate(EXPRESSIONS)}
    # Red drives class_8 ("other", ignored): all its mass is dropped, the 8 left are uniform.
    model = classifier_files(tmp_path, labels, ("class_8", "class_2", "class_3"), expressions=explicit,
                             ignore=["class_8"])
    probs = load_classifier(model).predict(solid(RED, GREEN))
    np.testing.assert_allclose(probs[0], 1 / 8, atol=1e-6)
    assert EXPRESSIONS[probs[1].argmax()] == "sadness"
    np.testing.assert_allclose(probs[1].max(), softmax_share(7), atol=1e-5)


def test_mean_and_std_are_applied_after_scale(tmp_path):
    mean, std = [0.1, 0.2, 0.3], [0.5, 1.0, 2.0]
    model = classifier_files(tmp_path, mean=mean, std=std)
    probs = load_classifier(model).predict(solid((128, 128, 128)))[0]
    # By hand: each channel's logit is GAIN * (128/255 - mean) / std; the 5 other labels sit at 0.
    logits = np.zeros(8)
    logits[[column(name) for name in CHANNEL_TARGETS]] = GAIN * (128 / 255 - np.array(mean)) / np.array(std)
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert EXPRESSIONS[probs.argmax()] == "happiness"  # without normalisation grey ties three ways


def test_bgr_swaps_red_and_blue(tmp_path):
    probs = load_classifier(classifier_files(tmp_path, channels="bgr")).predict(solid(RED, GREEN, BLUE))
    assert [EXPRESSIONS[i] for i in probs.argmax(axis=1)] == ["surprise", "sadness", "happiness"]


def test_probabilities_output_is_not_softmaxed(tmp_path):
    # The test model's "probabilities" are GAIN * channel mean: red gives happiness GAIN, the rest 0.
    probs = load_classifier(classifier_files(tmp_path, output="probabilities")).predict(solid(RED, (255, 255, 0)))
    np.testing.assert_allclose(probs[0, column("happiness")], 1.0, atol=1e-6)
    np.testing.assert_allclose(probs[1, [column("happiness"), column("sadness")]], 0.5, atol=1e-6)


def test_nhwc_layout(tmp_path):
    probs = load_classifier(classifier_files(tmp_path, layout="nhwc")).predict(solid(RED, GREEN, BLUE))
    assert [EXPRESSIONS[i] for i in probs.argmax(axis=1)] == list(CHANNEL_TARGETS)
    np.testing.assert_allclose(probs.max(axis=1), softmax_share(7), atol=1e-5)


def test_dynamic_batch_runs_in_chunks_of_32(tmp_path):
    classifier = load_classifier(classifier_files(tmp_path))
    classifier.session = recorder = RecordingSession(classifier.session)
    colours = [RED, GREEN, BLUE, (255, 255, 255), (10, 20, 30)]
    crops = solid(*(colours[i % len(colours)] for i in range(40)))
    probs = classifier.predict(crops)
    assert probs.shape == (40, 8) and recorder.batches == [32, 8]
    np.testing.assert_array_equal(probs[5:10], probs[35:40])  # rows stay in order across chunks


@pytest.mark.parametrize(("batch", "runs"), [(1, [1, 1, 1]), (2, [2, 2])])
def test_fixed_batch_runs_at_that_size(tmp_path, batch, runs):
    dynamic = load_classifier(classifier_files(tmp_path, name="dynamic"))
    fixed = load_classifier(classifier_files(tmp_path, name="fixed", batch=batch))
    fixed.session = recorder = RecordingSession(fixed.session)
    crops = solid(RED, GREEN, BLUE)
    np.testing.assert_allclose(fixed.predict(crops), dynamic.predict(crops), atol=1e-6)
    assert recorder.batches == runs


def test_no_crops_give_no_rows(tmp_path):
    assert load_classifier(classifier_files(tmp_path)).predict(np.zeros((0, SIZE, SIZE, 3), np.uint8)).shape == (0, 8)


def test_describe_records_the_model(tmp_path):
    model = classifier_files(tmp_path, SHUFFLED, ("Happy", "SAD", "Surprised"))
    settings = load_classifier(model).describe()
    assert settings["model"] == str(model.resolve()) and len(settings["sha256_quick"]) == 64
    assert settings["input_size"] == [SIZE, SIZE] and settings["mean"] == [0.0, 0.0, 0.0]
    assert list(settings["targets"]) == list(SHUFFLED) and settings["targets"]["angry"] == "anger"
    json.dumps(settings)  # it goes into a JSON header


def test_sidecar_may_be_named_after_the_whole_file_name(tmp_path):
    model = classifier_files(tmp_path)
    model.with_suffix(".yaml").rename(tmp_path / "model.onnx.yaml")
    assert load_classifier(model).spec.input_size == (SIZE, SIZE)


# --------------------------------------------------------------------------- errors


def test_missing_sidecar_says_what_to_write(tmp_path):
    model = build_model(tmp_path / "model.onnx", EXPRESSIONS, CHANNEL_TARGETS)
    with pytest.raises(InputError, match="labels.*input_size") as info:
        load_classifier(model)
    assert info.value.path == str(model) and "model.yaml" in str(info.value)


@pytest.mark.parametrize(("fields", "field"), [
    ({"std": [0.2, -0.1, 0.2]}, "std"),
    ({"mean": [0.5, 0.5]}, "mean"),
    ({"layout": "chw"}, "layout"),
    ({"channels": "rgba"}, "channels"),
    ({"output": "softmax"}, "output"),
    ({"scale": 0}, "scale"),
    ({"input_size": [2048, 2048]}, "input_size"),
    ({"input_size": [112, True]}, "input_size"),
    ({"labels": ["happy", "Happy"]}, "labels"),
    ({"crop": {"template": "ffhq"}}, "crop.template"),
    ({"crop": {"margin": 3}}, "crop.margin"),
    ({"expressions": {"nope": "anger"}}, "expressions"),
    ({"ignore": "neutral"}, "ignore"),
    ({"mena": [0, 0, 0]}, "mena"),
])
def test_bad_sidecar_field(tmp_path, fields, field):
    model = classifier_files(tmp_path)
    sidecar = write_sidecar(model, **{"labels": list(EXPRESSIONS), **fields})
    with pytest.raises(InputError, match=f"'{field}'") as info:
        load_classifier(model)
    assert info.value.path == str(sidecar)


def test_sidecar_that_is_not_yaml(tmp_path):
    model = classifier_files(tmp_path)
    model.with_suffix(".yaml").write_text("labels: [happy\ninput_size: 3")
    with pytest.raises(InputError, match="cannot read sidecar") as info:
        load_classifier(model)
    assert info.value.path == str(model.with_suffix(".yaml"))
    assert "\n" not in str(info.value)


def test_unknown_label_needs_expressions_or_ignore(tmp_path):
    labels = (*EXPRESSIONS, "other")
    model = build_model(tmp_path / "model.onnx", labels, CHANNEL_TARGETS)
    sidecar = write_sidecar(model, labels=list(labels))
    with pytest.raises(InputError, match="'other'.*ignore") as info:
        load_classifier(model)
    assert info.value.path == str(sidecar)
    write_sidecar(model, labels=list(labels), ignore=["other"])
    assert load_classifier(model).spec.targets[-1] is None


def test_label_count_must_match_the_output(tmp_path):
    model = build_model(tmp_path / "model.onnx", EXPRESSIONS, CHANNEL_TARGETS, classes=10)
    write_sidecar(model, labels=list(EXPRESSIONS))
    with pytest.raises(InputError, match="10 classes.*8 labels") as info:
        load_classifier(model)
    assert info.value.path == str(model)


@pytest.mark.parametrize(("fields", "message"), [
    ({"input_size": [SIZE, 2 * SIZE]}, "input_size"),
    ({"layout": "nhwc"}, "layout"),  # an NCHW model described as NHWC
])
def test_input_must_fit_the_sidecar(tmp_path, fields, message):
    model = build_model(tmp_path / "model.onnx", EXPRESSIONS, CHANNEL_TARGETS)
    write_sidecar(model, labels=list(EXPRESSIONS), **fields)
    with pytest.raises(InputError, match=message) as info:
        load_classifier(model)
    assert info.value.path == str(model)


def test_garbage_model_file(tmp_path):
    model = tmp_path / "garbage.onnx"
    model.write_bytes(np.random.default_rng(0).bytes(4096))
    write_sidecar(model, labels=list(EXPRESSIONS))
    with pytest.raises(InputError, match="onnxruntime can load") as info:
        load_classifier(model)
    assert info.value.path == str(model) and "\n" not in str(info.value)


def test_missing_model_file(tmp_path):
    with pytest.raises(InputError, match="not found") as info:
        load_classifier(tmp_path / "absent.onnx")
    assert info.value.path == str(tmp_path / "absent.onnx")


def test_without_onnxruntime(tmp_path, monkeypatch):
    model = classifier_files(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(BackendUnavailable, match=r"facecli\[onnx\]"):
        load_classifier(model)


def test_predict_checks_the_crop_size(tmp_path):
    with pytest.raises(ValueError, match="uint8 crops"):
        load_classifier(classifier_files(tmp_path)).predict(np.zeros((1, SIZE + 1, SIZE, 3), np.uint8))


# --------------------------------------------------------------------------- alignment


def arcface_spec(size: tuple[int, int] = (112, 112), margin: float = 0.0) -> ModelSpec:
    return ModelSpec(labels=("neutral",), targets=("neutral",), input_size=size, margin=margin)


ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]])


def test_template_points():
    np.testing.assert_allclose(template_points(arcface_spec()), ARCFACE_112)
    # ArcFace's original 96x112 layout is the square one 8 px to the left.
    np.testing.assert_allclose(template_points(arcface_spec((96, 112))), ARCFACE_112 - [8, 0])
    # A margin shrinks the layout about the centre: the crop shows 1 + margin times as much.
    np.testing.assert_allclose(template_points(arcface_spec((224, 224), 0.25)), 112 + (ARCFACE_112 * 2 - 112) / 1.25)


def test_align_crops_puts_the_five_points_on_the_template():
    """Coloured dots at five points of a rotated, scaled face land on the template in the crop."""
    spec = arcface_spec()
    angle, scale, offset = np.radians(25), 2.3, np.array([140.0, 90.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = ARCFACE_112 @ (scale * rot).T + offset
    landmarks = np.zeros((1, 478, 3))
    landmarks[0, facecli.facemodel.FIVE_POINT, :2] = points
    image = np.full((480, 640, 3), 90, np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    for point, colour in zip(points, colours):
        cv2.circle(image, tuple(int(round(v)) for v in point * 16), 12 * 16, colour, -1, cv2.LINE_AA, shift=4)
    crop = align_crops(image, landmarks, spec)[0]
    for target, colour in zip(ARCFACE_112, colours):
        near = np.linalg.norm(crop.astype(float) - colour, axis=2) < 60
        ys, xs = np.nonzero(near)
        assert np.hypot(xs.mean() - target[0], ys.mean() - target[1]) < 0.6


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, np.ndarray]:
    return read_image(ASTRONAUT), facecli.landmarks(ASTRONAUT).landmarks_478


def test_align_crops_on_a_real_face(astronaut):
    image, landmarks = astronaut
    spec = arcface_spec()
    crops = align_crops(image, landmarks, spec)
    assert crops.shape == (1, 112, 112, 3) and crops.dtype == np.uint8
    assert crops[0].std() > 20
    matrix = alignment_matrices(landmarks, spec)[0]
    projected = five_points(landmarks[0])[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    # A similarity cannot bend a face onto the template: least squares centres it exactly...
    np.testing.assert_allclose(projected.mean(axis=0), ARCFACE_112.mean(axis=0), atol=0.01)
    # ...and leaves each point a few px off (measured 2.8-6.6: her smile is wider than the template's mouth).
    assert np.linalg.norm(projected - ARCFACE_112, axis=1).max() < 8.0
