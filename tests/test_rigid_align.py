"""Mesh stabilization on facecli's mean face moved rigidly and deformed by expressions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from facecli import rigid_align
from facecli.errors import InputError, UsageError
from facecli.face_rig import JAW_HINGE_MM, LEFT_BROW, MOUTH_CORNERS, RIGHT_BROW
from facecli.facemodel import RIGID_INDICES, mean_face
from facecli.geometry import rotation_from_euler_xyz

MAX_ANGLE_DEG = 20.0
MAX_SHIFT_MM = 30.0
NOISE_MM = 0.2
CHEEKS = np.array([205, 425, 50, 280])  # cheek centres, both sides


@dataclass(frozen=True)
class Synthetic:
    """Posed meshes and their true poses: mesh = (face + expression) @ R.T + t + noise."""

    meshes: np.ndarray  # (M, N, 3) mm
    rotations: np.ndarray  # (M, 3, 3)
    translations: np.ndarray  # (M, 3) mm
    expressive: np.ndarray  # (M,) bool


def _falloff(vertices: np.ndarray, core: np.ndarray, sigma_mm: float) -> np.ndarray:
    d2 = ((vertices[:, None] - vertices[core][None]) ** 2).sum(axis=2).min(axis=1)
    return np.exp(-0.5 * d2 / sigma_mm**2)


def _normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, triangles[:, k], np.cross(b - a, c - a))
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-9)


def expression(face: np.ndarray, amounts: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """The face (478, 3) mm with jaw open, smile, brow raise and puffed cheeks at ``amounts`` (4,) 0-1."""
    jaw, smile, brows, puff = amounts
    out = face.copy()
    # Jaw: the lower face turns about the hinge, fully below the mouth corners, smoothly above.
    corner_y = face[MOUTH_CORNERS, 1].mean()
    share = np.clip((face[:, 1] - (corner_y - 12.0)) / 20.0, 0.0, 1.0) ** 2
    angle = np.radians(14.0 * jaw) * share
    rel = face - JAW_HINGE_MM
    out[:, 1] = JAW_HINGE_MM[1] + rel[:, 1] * np.cos(angle) - rel[:, 2] * np.sin(angle)
    out[:, 2] = JAW_HINGE_MM[2] + rel[:, 1] * np.sin(angle) + rel[:, 2] * np.cos(angle)
    # Smile: mouth corners up, out and back.
    side = np.sign(face[:, 0])
    corners = _falloff(face, MOUTH_CORNERS, 10.0) * smile
    out += corners[:, None] * np.stack([5.0 * side, np.full(len(face), -5.0), np.full(len(face), 3.0)], axis=1)
    # Brows up, the forehead skin above them following.
    out[:, 1] -= 6.0 * brows * _falloff(face, np.concatenate([RIGHT_BROW, LEFT_BROW]), 12.0)
    # Cheeks puffed out along the surface normal.
    out += 7.0 * puff * _falloff(face, CHEEKS, 14.0)[:, None] * _normals(face, triangles)
    return out


def synthetic_set(count: int, seed: int, neutral_share: float = 0.25, centroids: bool = False) -> Synthetic:
    """``count`` posed meshes of the mean face; ``centroids`` appends each triangle's centroid as a
    vertex (478 + 852 = 1330), a topology without the MediaPipe prior."""
    rng = np.random.default_rng(seed)
    model = mean_face()
    rotations, translations, meshes = [], [], []
    expressive = rng.random(count) >= neutral_share
    for moves in expressive:
        amounts = rng.uniform(0.4, 1.0, 4) * (rng.random(4) < 0.6) if moves else np.zeros(4)
        face = expression(model.vertices_mm, amounts, model.triangles)
        if centroids:
            face = np.concatenate([face, face[model.triangles].mean(axis=1)])
        rot = rotation_from_euler_xyz(np.radians(rng.uniform(-MAX_ANGLE_DEG, MAX_ANGLE_DEG, 3)))
        shift = rng.uniform(-MAX_SHIFT_MM, MAX_SHIFT_MM, 3)
        rotations.append(rot)
        translations.append(shift)
        meshes.append(face @ rot.T + shift + rng.normal(0.0, NOISE_MM, face.shape))
    return Synthetic(np.stack(meshes), np.stack(rotations), np.stack(translations), expressive)


def pose_errors(transforms: list[rigid_align.RigidTransform], synth: Synthetic,
                ref_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rotation error (deg) and translation error (mm, mean distance between where the estimate
    and the truth put the skull points) of every mesh's transform to the reference."""
    skull = mean_face().vertices_mm[RIGID_INDICES]
    ref_rot, ref_t = synth.rotations[ref_index], synth.translations[ref_index]
    rot_deg, shift_mm = [], []
    for tr, rot, t in zip(transforms, synth.rotations, synth.translations):
        true_rot = ref_rot @ rot.T  # mesh frame -> reference frame
        cos = (np.trace(tr.rotation.T @ true_rot) - 1.0) / 2.0
        rot_deg.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
        shift_mm.append(np.linalg.norm(tr.apply(skull @ rot.T + t) - (skull @ ref_rot.T + ref_t), axis=1).mean())
    return np.array(rot_deg), np.array(shift_mm)


def _summary(transforms: list[rigid_align.RigidTransform], synth: Synthetic) -> tuple[float, float]:
    rot_deg, shift_mm = pose_errors(transforms, synth)
    return rot_deg[synth.expressive].mean(), shift_mm[synth.expressive].mean()


def _check_beats_kabsch(synth: Synthetic, ours: list[rigid_align.RigidTransform]) -> None:
    baseline = [rigid_align.kabsch_all(v, synth.meshes[0]) for v in synth.meshes]
    (rot, shift), (base_rot, base_shift) = _summary(ours, synth), _summary(baseline, synth)
    rot_all, _ = pose_errors(ours, synth)
    assert rot_all.mean() <= 0.3
    assert 3 * rot <= base_rot and 3 * shift <= base_shift


def test_mediapipe_prior_beats_all_vertex_kabsch_on_expressions() -> None:
    synth = synthetic_set(40, seed=7)
    weights = rigid_align.vertex_weights(synth.meshes)
    assert weights[RIGID_INDICES].min() == 1.0 and np.median(weights) == rigid_align.PRIOR_ELSEWHERE
    _check_beats_kabsch(synth, rigid_align.stabilize_meshes(list(synth.meshes)))


def test_data_driven_weights_find_the_skull_and_beat_kabsch() -> None:
    synth = synthetic_set(40, seed=8, centroids=True)
    weights = rigid_align.vertex_weights(synth.meshes)
    chin_and_lips = np.array([152, 148, 377, 17, 14, 13, 0, 61, 291])
    assert weights[RIGID_INDICES].mean() > 10 * weights[chin_and_lips].mean()
    _check_beats_kabsch(synth, rigid_align.stabilize_meshes(list(synth.meshes)))


def test_unordered_vertices_and_meshes_give_the_same_transforms() -> None:
    synth = synthetic_set(12, seed=9, centroids=True)
    rng = np.random.default_rng(0)
    vertex_order, mesh_order = rng.permutation(synth.meshes.shape[1]), np.r_[0, 1 + rng.permutation(11)]
    plain = rigid_align.stabilize_meshes(list(synth.meshes))
    shuffled = rigid_align.stabilize_meshes(list(synth.meshes[mesh_order][:, vertex_order]))
    for i, tr in zip(mesh_order, shuffled):
        assert np.allclose(tr.rotation, plain[i].rotation, atol=1e-9)
        assert np.allclose(tr.translation, plain[i].translation, atol=1e-7)


def test_any_reference_and_exact_recovery() -> None:
    synth = synthetic_set(6, seed=10)
    transforms = rigid_align.stabilize_meshes(list(synth.meshes), ref_index=3)
    assert np.allclose(transforms[3].matrix, np.eye(4), atol=1e-9)
    assert pose_errors(transforms, synth, ref_index=3)[0].max() < 0.5
    # Noise-free rigid motion of a neutral face comes back exactly.
    face = mean_face().vertices_mm
    rot = rotation_from_euler_xyz(np.radians([12.0, -18.0, 7.0]))
    tr = rigid_align.align(face @ rot.T + [10.0, -20.0, 5.0], face, rigid_align.mediapipe_weights(478))
    assert np.allclose(tr.apply(face @ rot.T + [10.0, -20.0, 5.0]), face, atol=1e-9) and tr.residual_mm < 1e-9


def test_smoothing_steadies_a_noisy_sequence() -> None:
    """A slow head turn seen with 1 mm noise (the reference without: its noise would be a bias
    common to every frame): smoothing over neighbours lowers the error."""
    rng = np.random.default_rng(11)
    face = mean_face().vertices_mm
    frames = np.arange(60)
    angles = np.radians(np.stack([8 * np.sin(frames / 15), 12 * np.sin(frames / 20), 3 * np.cos(frames / 25)], 1))
    rotations = np.stack([rotation_from_euler_xyz(a) for a in angles])
    translations = np.stack([20 * np.sin(frames / 18), 5 * np.cos(frames / 30), 2 * frames / 60], 1) * [1, 1, 10]
    meshes = np.stack([face @ r.T + t + rng.normal(0, 1.0, face.shape) for r, t in zip(rotations, translations)])
    meshes[0] = face @ rotations[0].T + translations[0]
    synth = Synthetic(meshes, rotations, translations, np.zeros(60, bool))
    raw = pose_errors(rigid_align.stabilize_meshes(list(meshes)), synth)
    smooth = pose_errors(rigid_align.stabilize_meshes(list(meshes), smooth=True), synth)
    assert smooth[0].mean() < 0.8 * raw[0].mean() and smooth[1].mean() < 0.8 * raw[1].mean()


def test_user_weights(tmp_path) -> None:
    synth = synthetic_set(5, seed=12)
    path = tmp_path / "weights.txt"
    path.write_text("# skull prior\n" + "\n".join(f"{w:g}" for w in rigid_align.mediapipe_weights(478)) + "\n")
    weights = rigid_align.read_weights(path, 478)
    ours = rigid_align.stabilize_meshes(list(synth.meshes), user_weights=weights)
    default = rigid_align.stabilize_meshes(list(synth.meshes))
    assert all(np.allclose(a.matrix, b.matrix) for a, b in zip(ours, default))
    with pytest.raises(InputError, match="478 weights for 468 vertices"):
        rigid_align.read_weights(path, 468)
    path.write_text("1\n0.5\nheavy\n")
    with pytest.raises(InputError, match=r"weights.txt: line 3 is not a number"):
        rigid_align.read_weights(path, 3)
    with pytest.raises(InputError, match="not negative"):
        rigid_align.stabilize_meshes(list(synth.meshes), user_weights=-np.ones(478))


def test_bad_sets() -> None:
    face = mean_face().vertices_mm
    with pytest.raises(InputError, match="mixed topology: b.obj has 468 vertices, a.obj has 478"):
        rigid_align.stabilize_meshes([face, face[:468]], names=["a.obj", "b.obj"])
    with pytest.raises(UsageError, match="no meshes"):
        rigid_align.stabilize_meshes([])
    with pytest.raises(UsageError, match="reference index 2"):
        rigid_align.stabilize_meshes([face, face], ref_index=2)
