"""Build facecli/data/mean_face.npz, the metric mean face (see docs/mean_face.md).

    .venv/bin/python scripts/build_mean_face.py [IMAGE ...] [--out PATH] [--max-yaw DEG] [--no-flip]

Each image (and its horizontal flip) goes through MediaPipe's face mesh; the
shapes are aligned by similarity Procrustes on the rigid points, non-frontal
ones dropped, averaged, made exactly left/right symmetric, scaled to a 63 mm
inter-pupillary distance and centred on the rigid points.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import defaultdict, deque
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a plain script from a source checkout

from facecli.facemodel import LEFT_IRIS, RIGHT_IRIS, RIGID_INDICES  # noqa: E402
from facecli.geometry import euler_xyz, umeyama  # noqa: E402

IPD_MM = 63.0  # mean adult inter-pupillary distance (Dodgson 2004, about 63 mm)
MESH_VERTICES = 468  # the tessellated part; 468-477 are iris points
TRIANGLES = 852
DEFAULT_IMAGES = (ROOT / "tests/data/astronaut.png", ROOT / "tests/data/grace_hopper.jpg")
GPA_ITERATIONS = 10


def detect(image_bgr: np.ndarray) -> np.ndarray | None:
    """(478, 3) landmarks in pixels; z is scaled by the width, like x."""
    height, width = image_bgr.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, refine_landmarks=True, max_num_faces=1
    ) as mesh:
        result = mesh.process(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
    if not result.multi_face_landmarks:
        return None
    points = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark])
    return points * (width, height, width)


def align(shape: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Shape moved onto target by the similarity fitted on the rigid points."""
    s, rot, t = umeyama(shape[RIGID_INDICES], target[RIGID_INDICES])
    return s * shape @ rot.T + t


def procrustes_mean(shapes: list[np.ndarray]) -> np.ndarray:
    """Generalised Procrustes: align all to the running mean, re-average."""
    mean = shapes[0]
    for _ in range(GPA_ITERATIONS):
        mean = np.mean([align(s, mean) for s in shapes], axis=0)
        mean = align(mean, shapes[0])  # pin scale and pose to the first shape
    return mean


def mirror_index(shape: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Mirror partners and the symmetry plane (unit normal n, offset h).

    Starts from the image's vertical axis as the plane and refines: match the
    reflected shape to itself (linear_sum_assignment, so the result is a
    permutation), then fit the plane to the matched pairs.
    """
    normal, offset = np.array([1.0, 0.0, 0.0]), float(shape[:, 0].mean())
    partner = np.arange(len(shape))
    for _ in range(10):
        reflected = shape - 2.0 * (shape @ normal - offset)[:, None] * normal
        _, new_partner = linear_sum_assignment(cdist(shape, reflected))
        if np.array_equal(new_partner, partner):
            break
        partner = new_partner
        paired = partner != np.arange(len(shape))
        diffs = shape[paired] - shape[partner[paired]]
        normal = np.linalg.svd(diffs, full_matrices=False)[2][0]
        normal *= np.sign(normal[0])
        offset = float(((shape + shape[partner]) / 2 @ normal).mean())
    if not np.array_equal(partner[partner], np.arange(len(shape))):
        raise RuntimeError("mirror matching is not an involution; check the input faces")
    return partner, normal, offset


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector a onto unit vector b."""
    axis = np.cross(a, b)
    sin, cos = np.linalg.norm(axis), float(a @ b)
    if sin < 1e-12:
        return np.eye(3)
    k = axis / sin
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + sin * kx + (1 - cos) * kx @ kx


def canonical(shape: np.ndarray, shapes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric shape with the symmetry plane at x=0 and zero pitch."""
    partner, normal, offset = mirror_index(shape)
    centred = shape - offset * normal
    upright = centred @ rotation_between(normal, np.array([1.0, 0.0, 0.0])).T
    symmetric = (upright + upright[partner] * (-1.0, 1.0, 1.0)) / 2
    # Zero pitch: how the photographed people held their heads while looking into the
    # camera (the mean pitch of the inputs), so a face looking at the camera reads 0.
    pitches = [_pitch_of(symmetric, s) for s in shapes]
    c, s = np.cos(np.mean(pitches)), np.sin(np.mean(pitches))
    pitch = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return symmetric @ pitch.T, partner


def _pitch_of(model: np.ndarray, shape: np.ndarray) -> float:
    """Rotation about x (radians) that turns the model into the shape's orientation."""
    _, rot, _ = umeyama(model[RIGID_INDICES], shape[RIGID_INDICES])
    return float(euler_xyz(rot)[0])


def yaw_degrees(shape: np.ndarray, frontal: np.ndarray) -> float:
    """Yaw of shape relative to frontal: where its depth axis points."""
    _, rot, _ = umeyama(frontal[RIGID_INDICES], shape[RIGID_INDICES])
    depth = rot[:, 2]
    return float(np.degrees(np.arctan2(depth[0], depth[2])))


def mesh_triangles() -> np.ndarray:
    """The 852 faces of MediaPipe's tessellation, unoriented.

    FACEMESH_TESSELATION is an edge set. Its 3-cliques are the faces plus two
    extra: a degree-3 vertex (102, and its mirror 331) whose three fan
    triangles are faces, while the triangle spanned by its three neighbours
    is a 3-clique covering it, not a face. Such cliques are dropped.
    """
    neighbours: dict[int, set[int]] = defaultdict(set)
    for a, b in mp.solutions.face_mesh_connections.FACEMESH_TESSELATION:
        neighbours[a].add(b)
        neighbours[b].add(a)
    cliques = {
        tuple(sorted((a, b, c)))
        for a in neighbours
        for b in neighbours[a]
        for c in neighbours[a] & neighbours[b]
    }
    fans = {tuple(sorted(n)) for n in neighbours.values() if len(n) == 3}
    faces = np.array(sorted(cliques - fans))
    if len(neighbours) != MESH_VERTICES or len(faces) != TRIANGLES:
        raise RuntimeError(f"tessellation gave {len(faces)} faces on {len(neighbours)} vertices")
    return faces


def orient(faces: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Consistently oriented faces, counter-clockwise as seen from the camera.

    Breadth-first over shared edges (a neighbour must run a shared edge the
    other way), then flip all if the area-weighted normal points away from
    the camera (+z).
    """
    faces_of_edge: dict[frozenset[int], list[int]] = defaultdict(list)
    for f, face in enumerate(faces):
        for edge in itertools.combinations(face, 2):
            faces_of_edge[frozenset(edge)].append(f)
    oriented = {0: tuple(faces[0])}
    queue = deque([0])
    while queue:
        face = oriented[queue.popleft()]
        directed = {(face[i], face[(i + 1) % 3]) for i in range(3)}
        for u, v in directed:
            for g in faces_of_edge[frozenset((u, v))]:
                if g not in oriented:
                    a, b, c = faces[g]
                    same_way = {(a, b), (b, c), (c, a)} & directed
                    oriented[g] = (a, c, b) if same_way else (a, b, c)
                    queue.append(g)
    if len(oriented) != len(faces):
        raise RuntimeError("tessellation is not connected")
    result = np.array([oriented[f] for f in range(len(faces))], dtype=np.int32)
    a, b, c = (vertices[result[:, i]] for i in range(3))
    if np.cross(b - a, c - a)[:, 2].sum() > 0:
        result = result[:, ::-1].copy()
    return result


def display_name(path: Path) -> str:
    """Path relative to the checkout when inside it, so sources are portable."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def load_shapes(paths: list[Path], flip: bool) -> tuple[list[np.ndarray], list[str]]:
    shapes, names = [], []
    for path in paths:
        image = cv2.imread(str(path))
        if image is None:
            raise SystemExit(f"cannot read {path}")
        name = display_name(path)
        variants = [(image, name)] + ([(image[:, ::-1].copy(), f"{name} (flipped)")] if flip else [])
        for variant, name in variants:
            shape = detect(variant)
            if shape is None:
                print(f"skip {name}: no face", file=sys.stderr)
                continue
            shapes.append(shape)
            names.append(name)
    return shapes, names


def frontal_only(
    shapes: list[np.ndarray], names: list[str], max_yaw: float
) -> tuple[list[np.ndarray], list[str]]:
    """Drop faces turned more than max_yaw from a first-pass frontal mean."""
    frontal, _ = canonical(procrustes_mean(shapes), shapes)
    kept = []
    for shape, name in zip(shapes, names):
        yaw = yaw_degrees(shape, frontal)
        print(f"{name}: yaw {yaw:+.1f} deg", file=sys.stderr)
        if abs(yaw) <= max_yaw:
            kept.append((shape, name))
    if not kept:
        raise SystemExit(f"no face within {max_yaw} deg of frontal")
    return [s for s, _ in kept], [n for _, n in kept]


def build(shapes: list[np.ndarray]) -> dict[str, np.ndarray]:
    vertices, partner = canonical(procrustes_mean(shapes), shapes)
    vertices *= IPD_MM / np.linalg.norm(vertices[RIGHT_IRIS[0]] - vertices[LEFT_IRIS[0]])
    vertices -= vertices[RIGID_INDICES].mean(0)
    triangles = orient(mesh_triangles(), vertices)
    return {
        "vertices_mm": vertices.astype(np.float64),
        "triangles": triangles,
        "mirror_index": partner.astype(np.int64),
        "ipd_mm": np.float64(IPD_MM),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", type=Path, default=list(DEFAULT_IMAGES))
    parser.add_argument("--out", type=Path, default=ROOT / "facecli/data/mean_face.npz")
    parser.add_argument("--max-yaw", type=float, default=15.0, help="degrees (default 15)")
    parser.add_argument("--no-flip", action="store_true", help="skip the mirrored copies")
    args = parser.parse_args(argv)

    shapes, names = load_shapes(args.images, flip=not args.no_flip)
    if not shapes:
        raise SystemExit("no face found in any input")
    shapes, names = frontal_only(shapes, names, args.max_yaw)
    model = build(shapes)
    sources = f"mediapipe {mp.__version__} face_mesh (static, refine_landmarks) on: " + "; ".join(names)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, sources=np.str_(sources), **model)
    v = model["vertices_mm"]
    print(
        f"wrote {args.out}: {len(names)} faces, width {np.ptp(v[:, 0]):.1f} mm, "
        f"depth {np.ptp(v[:, 2]):.1f} mm"
    )


if __name__ == "__main__":
    main()
