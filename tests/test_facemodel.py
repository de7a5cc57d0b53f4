from __future__ import annotations

import importlib.util
import itertools
from collections import Counter
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
import pytest

from facecli import facemodel as fm

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "tests/data/astronaut.png"
EYE_CORNERS = [33, 133, 362, 263]


@pytest.fixture(scope="module")
def face():
    return fm.mean_face()


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe landmarks (478, 2) in pixels and a BlazeFace box (x0, y0, x1, y1)."""
    image = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, refine_landmarks=True, max_num_faces=1
    ) as mesh:
        marks = mesh.process(image).multi_face_landmarks[0].landmark
    with mp.solutions.face_detection.FaceDetection(model_selection=0) as detector:
        box = detector.process(image).detections[0].location_data.relative_bounding_box
    points = np.array([(p.x * width, p.y * height) for p in marks])
    x0, y0 = box.xmin * width, box.ymin * height
    return points, np.array([x0, y0, x0 + box.width * width, y0 + box.height * height])


def test_mean_face_shape_and_ipd(face):
    assert face.vertices_mm.shape == (fm.MESH_POINTS, 3)
    assert face.vertices_mm.dtype == np.float64
    ipd = np.linalg.norm(face.vertices_mm[fm.RIGHT_IRIS[0]] - face.vertices_mm[fm.LEFT_IRIS[0]])
    assert abs(ipd - 63.0) < 0.1
    assert face.ipd_mm == 63.0


def test_mean_face_anatomy(face):
    v = face.vertices_mm
    jaw = v[fm.IBUG68_FROM_MESH[:17]]
    assert 120 < np.ptp(jaw[:, 0]) < 160
    # Nose tip in front of the eye corners. MediaPipe's own metric canonical
    # model puts it ~41 mm in front of their mean depth; see docs/mean_face.md.
    depth = v[EYE_CORNERS, 2].mean() - v[4, 2]
    assert 35 < depth < 55
    assert v[4, 2] == v[:, 2].min()
    mouth = v[fm.IBUG68_FROM_MESH[48:68]]
    assert v[EYE_CORNERS, 1].max() < mouth[:, 1].min()
    assert v[fm.RIGHT_IRIS[0], 0] < 0 < v[fm.LEFT_IRIS[0], 0]  # subject's right = image left


def test_mean_face_origin_is_rigid_centroid(face):
    np.testing.assert_allclose(face.vertices_mm[fm.RIGID_INDICES].mean(0), 0, atol=1e-9)


def test_mean_face_is_cached_and_read_only(face):
    assert fm.mean_face() is face
    with pytest.raises(ValueError):
        face.vertices_mm[0, 0] = 1.0


def test_triangles_cover_mesh(face):
    tri = face.triangles
    assert tri.shape == (852, 3) and tri.dtype == np.int32
    assert set(np.unique(tri)) == set(range(468))
    assert len({tuple(sorted(t)) for t in tri}) == 852


def test_triangles_consistently_oriented_towards_camera(face):
    tri = face.triangles
    directed = Counter((a, b) for t in tri.tolist() for a, b in itertools.pairwise(t + t[:1]))
    assert max(directed.values()) == 1  # neighbours run shared edges opposite ways
    a, b, c = (face.vertices_mm[tri[:, i]] for i in range(3))
    normals_z = np.cross(b - a, c - a)[:, 2]
    assert (normals_z < 0).mean() > 0.95  # counter-clockwise on screen, facing -z


def test_mirror_index_involution_and_symmetry(face):
    m = fm.MIRROR_INDEX
    assert m.shape == (fm.MESH_POINTS,)
    np.testing.assert_array_equal(m[m], np.arange(fm.MESH_POINTS))
    mirrored = face.vertices_mm * (-1.0, 1.0, 1.0)
    assert np.abs(mirrored[m] - face.vertices_mm).max() < 0.5
    assert m[fm.RIGHT_IRIS[0]] == fm.LEFT_IRIS[0]
    assert (m == np.arange(fm.MESH_POINTS)).sum() == 28  # MediaPipe's midline points


def test_mirror_index_preserves_mesh_edges(face):
    # Independent of geometry: a wrong pairing would break many edges. The
    # tessellation itself splits 6 quads along the other diagonal on one side.
    edges = {frozenset(e) for t in face.triangles.tolist() for e in itertools.combinations(t, 2)}
    kept = sum(frozenset(fm.MIRROR_INDEX[list(e)]) in edges for e in edges)
    assert kept >= len(edges) - 6


def test_index_sets_are_mirror_consistent():
    m = fm.MIRROR_INDEX
    assert set(m[fm.RIGID_INDICES]) == set(fm.RIGID_INDICES)
    assert 30 <= len(fm.RIGID_INDICES) <= 60
    assert len(set(fm.RIGID_INDICES)) == len(fm.RIGID_INDICES)
    ibug = fm.IBUG68_FROM_MESH
    # iBUG jaw, brows and lips mirror onto themselves in reverse order.
    np.testing.assert_array_equal(m[ibug[:17]], ibug[16::-1])
    np.testing.assert_array_equal(m[ibug[17:22]], ibug[26:21:-1])
    np.testing.assert_array_equal(m[ibug[48:55]], ibug[54:47:-1])


def test_ibug68_on_astronaut(astronaut):
    points, box = astronaut
    p = points[fm.IBUG68_FROM_MESH]
    x, y = p[:, 0], p[:, 1]
    assert fm.IBUG68_FROM_MESH.shape == (68,)
    assert x[36] < x[39] and x[42] < x[45]
    assert y[8] > y[57] > y[51] > y[33] > y[27]
    assert (np.diff(x[:17]) > 0).sum() >= 15
    face_height = y[8] - y[27]
    for jaw_end, eye_corner in ((0, 36), (16, 45)):
        assert abs(y[jaw_end] - y[eye_corner]) < 0.06 * face_height
    margin = 0.05 * (box[2:] - box[:2])
    assert np.all((p >= box[:2] - margin) & (p <= box[2:] + margin))


def test_five_points_on_astronaut(astronaut):
    points, _ = astronaut
    five = fm.five_points(points)
    assert five.shape == (5, 2)
    assert five[0, 0] < five[1, 0]
    assert five[3, 0] < five[4, 0]
    assert five[3, 1] > five[2, 1] and five[4, 1] > five[2, 1]
    assert five[2, 1] > max(five[0, 1], five[1, 1])


def test_five_points_batch_and_bad_shape():
    batch = np.random.default_rng(0).random((2, 7, fm.MESH_POINTS, 3))
    out = fm.five_points(batch)
    assert out.shape == (2, 7, 5, 3)
    np.testing.assert_array_equal(out[1, 3, 0], batch[1, 3, 468])
    with pytest.raises(ValueError):
        fm.five_points(np.zeros((468, 3)))


def test_stored_model_matches_build_script(tmp_path, face):
    spec = importlib.util.spec_from_file_location("build_mean_face", ROOT / "scripts/build_mean_face.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "mean_face.npz"
    script.main(["--out", str(out)])
    with np.load(out) as built:
        np.testing.assert_allclose(built["vertices_mm"], face.vertices_mm, atol=0.5)
        np.testing.assert_array_equal(built["triangles"], face.triangles)
        np.testing.assert_array_equal(built["mirror_index"], fm.MIRROR_INDEX)
        assert "astronaut.png" in str(built["sources"])
