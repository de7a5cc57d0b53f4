"""A procedural rig for one portrait's 478-point mesh: face controls, head rotation and gaze.

The portrait's mesh (MediaPipe's x, y in px and relative depth z in the same scale) is brought
into the mean face's frame (mm) by a similarity fit on the rigid points. There every control
moves points by a displacement designed on the face's anatomy: the jaw rotates about a hinge
in front of the ears, lip shapes are smooth offsets around the mouth, lids slide over the eyes
and the brows lift. The head then turns about a pivot in the neck, and the result goes back
to the image by the same similarity: a weak-perspective camera, accurate for the few degrees
of motion a talking head makes.

The rest pose (all controls 0) has the lips together and the eyes open, whatever the
portrait shows: a smiling portrait with parted lips is closed first (the jaw rises, the upper
lip comes down a little), so silence gives a closed mouth.
"""

from __future__ import annotations

import functools

import numpy as np

from .facemodel import RIGID_INDICES, mean_face
from .geometry import euler_xyz, rotation_from_euler_xyz, umeyama
from .results import FACE_CONTROLS

# Lip contours, corner to corner, image left to right. Pairs face each other across the mouth.
UPPER_INNER_LIP = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308])
LOWER_INNER_LIP = np.array([78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308])
UPPER_OUTER_LIP = np.array([61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291])
LOWER_OUTER_LIP = np.array([61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291])
MOUTH_CORNERS = np.array([61, 291, 78, 308])
# Eyelid contours, outer to inner corner; the subject's right eye is on the image left.
RIGHT_UPPER_LID = np.array([33, 246, 161, 160, 159, 158, 157, 173, 133])
RIGHT_LOWER_LID = np.array([33, 7, 163, 144, 145, 153, 154, 155, 133])
LEFT_UPPER_LID = np.array([263, 466, 388, 387, 386, 385, 384, 398, 362])
LEFT_LOWER_LID = np.array([263, 249, 390, 373, 374, 380, 381, 382, 362])
# The skin above each upper lid, in rows facing the lid's inner points: a closing lid takes its
# fold (and the lashes just over the contour) down with it.
UPPER_LID_FOLDS = {
    33: ((np.array([247, 30, 29, 27, 28, 56, 190]), 0.6), (np.array([113, 225, 224, 223, 222, 221, 189]), 0.25)),
    263: ((np.array([467, 260, 259, 257, 258, 286, 414]), 0.6), (np.array([342, 445, 444, 443, 442, 441, 413]), 0.25)),
}
RIGHT_BROW = np.array([70, 63, 105, 66, 107, 46, 53, 52, 65, 55])
LEFT_BROW = np.array([300, 293, 334, 296, 336, 276, 283, 282, 295, 285])
INNER_BROWS = np.array([107, 66, 55, 65, 336, 296, 285, 295])
NOSE_WINGS = np.array([48, 115, 220, 45, 64, 98, 278, 344, 440, 275, 294, 327])
FACE_OVAL = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
                      152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109])
RIGHT_IRIS_POINTS = np.arange(468, 473)
LEFT_IRIS_POINTS = np.arange(473, 478)

JAW_HINGE_MM = np.array([0.0, 30.0, 75.0])  # temporomandibular joints' axis, face frame
JAW_MAX_DEG = 11.0  # jaw_open = 1: about 16 mm between the lips, a wide speaking opening
JAW_FULL_GAP_MM = 13.0  # the lip gap of the mean face at jaw_open = 1
NECK_PIVOT_MM = np.array([0.0, 45.0, 85.0])  # where nods and turns rotate about
EYEBALL_RADIUS_MM = 12.0
UPPER_LIP_SHARE = 0.35  # of a lip gap closed by the upper lip; the jaw closes the rest


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _falloff(vertices: np.ndarray, core: np.ndarray, sigma_mm: float) -> np.ndarray:
    """(V,) weight 1 on the core points, falling off as a Gaussian of the distance to them."""
    d2 = ((vertices[:, None, :] - vertices[None, core, :]) ** 2).sum(axis=2).min(axis=1)
    return np.exp(-0.5 * d2 / sigma_mm**2)


@functools.cache
def _weights() -> dict[str, np.ndarray]:
    """Region weights on the mean face (shared by every portrait; the mesh topology is fixed)."""
    v = mean_face().vertices_mm
    corner_y = v[MOUTH_CORNERS, 1].mean()
    lower_lip = np.concatenate([LOWER_INNER_LIP[1:-1], LOWER_OUTER_LIP[1:-1]])
    upper_lip = np.concatenate([UPPER_INNER_LIP[1:-1], UPPER_OUTER_LIP[1:-1]])
    # The jaw carries everything well below the mouth corners, nothing above them.
    jaw = _smoothstep((v[:, 1] - (corner_y - 4.0)) / 14.0)
    jaw[upper_lip] = 0.0
    jaw[lower_lip] = 1.0
    jaw[MOUTH_CORNERS] = 0.5
    upper = _falloff(v, upper_lip, 5.0) * (1.0 - jaw)
    upper[upper_lip] = 1.0
    lips = np.maximum(_falloff(v, np.concatenate([upper_lip, lower_lip, MOUTH_CORNERS]), 6.0), 0.0)
    corners = _falloff(v, MOUTH_CORNERS, 9.0)
    brows = _falloff(v, np.concatenate([RIGHT_BROW, LEFT_BROW]), 7.0)
    inner_brows = _falloff(v, INNER_BROWS, 6.0)
    nose = _falloff(v, NOSE_WINGS, 5.0)
    return {"jaw": jaw, "upper": upper, "lips": lips, "corners": corners, "brows": brows,
            "inner_brows": inner_brows, "nose": nose}


@functools.cache
def part_weights() -> dict[str, np.ndarray]:
    """(478,) weights 0-1 of the face's parts, for moving them separately (``reenact --parts``):
    ``mouth`` (lips, jaw, chin), ``eyes`` (lids, irises and the skin just around them) and
    ``expression`` (the rest: brows, forehead, cheeks, nose). They sum to 1 at every point."""
    v = mean_face().vertices_mm
    w = _weights()
    mouth = np.clip(np.maximum.reduce([w["jaw"], w["lips"], w["upper"]]), 0.0, 1.0)
    lids = np.concatenate([RIGHT_UPPER_LID, RIGHT_LOWER_LID, LEFT_UPPER_LID, LEFT_LOWER_LID])
    eyes = _falloff(v, lids, 3.0) * (1.0 - mouth)
    eyes[np.concatenate([RIGHT_IRIS_POINTS, LEFT_IRIS_POINTS])] = 1.0
    parts = {"mouth": mouth, "eyes": eyes, "expression": np.clip(1.0 - mouth - eyes, 0.0, 1.0)}
    for array in parts.values():
        array.setflags(write=False)
    return parts


def _lip_shapes() -> dict[str, np.ndarray]:
    """Displacement (V, 3) mm per unit of each linear lip, brow and nose control (face frame)."""
    v = mean_face().vertices_mm
    w = _weights()
    centre = v[[13, 14]].mean(axis=0)
    side = np.sign(v[:, 0])
    zeros = np.zeros_like(v)

    def field(dx=0.0, dy=0.0, dz=0.0, weight=None) -> np.ndarray:
        out = zeros.copy()
        out[:, 0], out[:, 1], out[:, 2] = dx, dy, dz
        return out * (weight[:, None] if weight is not None else 1.0)

    towards_centre = (centre[0] - v[:, 0]) * w["lips"]
    shapes = {
        "lip_stretch": field(dx=3.5 * side, dy=0.5, weight=w["corners"]),
        "lip_pucker": field(dz=-5.0, weight=w["lips"]) + field(dx=0.35 * towards_centre),
        "lip_funnel": field(dz=-4.0, weight=w["lips"]) + field(dx=0.25 * towards_centre)
        + field(dy=-1.5, weight=w["upper"]) + field(dy=1.5, weight=w["jaw"] * w["lips"]),
        "upper_lip_raise": field(dy=-2.5, weight=w["upper"]),
        "lower_lip_down": field(dy=2.5, weight=w["jaw"] * w["lips"]),
        "smile": field(dx=2.5 * side, dy=-3.5, dz=1.0, weight=w["corners"]),
        "frown": field(dx=0.5 * side, dy=3.0, weight=w["corners"]),
        "lip_press": field(dy=1.0, weight=w["upper"] * w["lips"]) + field(dy=-1.0, weight=w["jaw"] * w["lips"]),
        "brow_raise": field(dy=-5.0, weight=w["brows"]),
        "brow_inner_up": field(dy=-4.0, weight=w["inner_brows"]),
        "brow_down": field(dy=3.0, weight=w["brows"]) + field(dx=-1.5 * side, weight=w["inner_brows"]),
        "nose_sneer": field(dy=-2.0, weight=w["nose"]) + field(dy=-0.8, weight=w["upper"]),
    }
    for array in shapes.values():
        array[MOUTH_CORNERS[:2], 2] = np.minimum(array[MOUTH_CORNERS[:2], 2], 0.0)
    return shapes


_LINEAR = ("lip_stretch", "lip_pucker", "lip_funnel", "upper_lip_raise", "lower_lip_down", "smile", "frown",
           "lip_press", "brow_raise", "brow_inner_up", "brow_down", "nose_sneer")


@functools.cache
def _linear_basis() -> tuple[np.ndarray, np.ndarray]:
    """(len(_LINEAR), V * 3) displacement basis and the control indices it belongs to."""
    shapes = _lip_shapes()
    basis = np.ascontiguousarray(np.stack([shapes[name] for name in _LINEAR]).reshape(len(_LINEAR), -1))
    basis.setflags(write=False)
    return basis, np.array([FACE_CONTROLS.index(name) for name in _LINEAR])


def _rotate_x(points: np.ndarray, centre: np.ndarray, angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    rel = points - centre
    out = rel.copy()
    out[:, 1] = c * rel[:, 1] - s * rel[:, 2]
    out[:, 2] = s * rel[:, 1] + c * rel[:, 2]
    return out + centre


class FaceRig:
    """Deforms one portrait's mesh. ``pose()`` gives the (478, 3) px mesh for one frame."""

    def __init__(self, landmarks_478_px: np.ndarray):
        points = np.asarray(landmarks_478_px, np.float64)
        model = mean_face().vertices_mm
        # face frame (mm) -> image (px): x_img = s R X + t
        self.scale, self.rotation, self.translation = umeyama(model[RIGID_INDICES], points[RIGID_INDICES])
        self.pose_rad = euler_xyz(self.rotation)  # rx, ry, rz
        self.portrait_px = points
        self.shape_mm = (points - self.translation) @ self.rotation / self.scale
        self.rest_mm = self._close_lips(self.shape_mm, 1.0)

    def head_ring_mm(self, count: int = 40, scale: float = 1.3) -> np.ndarray:
        """(count, 3) points around the face outline, outside it by ``scale``: hair, ears and
        neck, which turn with the head but ignore the face controls."""
        outline = self.rest_mm[FACE_OVAL]
        centre = np.array([0.0, outline[:, 1].mean(), 0.0])
        angle = np.arctan2(outline[:, 1] - centre[1], outline[:, 0])
        picks = np.linspace(-np.pi, np.pi, count, endpoint=False)
        nearest = np.abs(np.angle(np.exp(1j * (angle[None, :] - picks[:, None])))).argmin(axis=1)
        points = outline[nearest].copy()
        points[:, :2] = centre[:2] + scale * (points[:, :2] - centre[:2])
        return points

    def fixed_ring_px(self, count: int = 40, scale: float = 2.0) -> np.ndarray:
        """(count, 2) px: a ring well outside the head that never moves (the background)."""
        return self.to_image(self.head_ring_mm(count, scale))[:, :2]

    def to_image(self, face_mm: np.ndarray, head_pose_deg: np.ndarray | None = None) -> np.ndarray:
        """Face-frame points (mm) to image px, turned by (yaw, pitch, roll) degrees about the neck."""
        camera = self.scale * face_mm @ self.rotation.T
        if head_pose_deg is not None and np.any(head_pose_deg):
            # added to the portrait's own angles, each on its own axis
            yaw, pitch, roll = np.radians(head_pose_deg)
            turn = rotation_from_euler_xyz(self.pose_rad + [pitch, yaw, roll]) @ self.rotation.T
            pivot = self.scale * NECK_PIVOT_MM @ self.rotation.T
            camera = (camera - pivot) @ turn.T + pivot
        return camera + self.translation

    def pose(self, controls: np.ndarray, head_pose_deg: np.ndarray, gaze_deg: np.ndarray) -> np.ndarray:
        """(478, 3) px: the portrait's mesh with the face controls (FACE_CONTROLS order), turned
        by head_pose_deg (yaw, pitch, roll) and with the irises moved by gaze_deg (yaw, pitch)."""
        return self.to_image(self.deform_mm(controls, gaze_deg), head_pose_deg)

    def deform_mm(self, controls: np.ndarray, gaze_deg: np.ndarray) -> np.ndarray:
        c = dict(zip(FACE_CONTROLS, np.asarray(controls, np.float64)))
        w = _weights()
        face = self.rest_mm.copy()
        if c["jaw_open"]:
            opened = _rotate_x(face, JAW_HINGE_MM, np.radians(JAW_MAX_DEG * c["jaw_open"]))
            face += w["jaw"][:, None] * (opened - face)
        basis, index = _linear_basis()
        face += (np.asarray(controls, np.float64)[index] @ basis).reshape(face.shape)
        face = self._close_lips(face, c["lip_close"])
        self._move_irises(face, gaze_deg)
        for upper, lower, iris, blink in ((RIGHT_UPPER_LID, RIGHT_LOWER_LID, RIGHT_IRIS_POINTS, c["blink_right"]),
                                          (LEFT_UPPER_LID, LEFT_LOWER_LID, LEFT_IRIS_POINTS, c["blink_left"])):
            self._lids(face, upper, lower, iris, blink, c["eye_wide"], c["eye_squint"])
        return face

    @staticmethod
    def _close_lips(face: np.ndarray, amount: float) -> np.ndarray:
        """Bring the lips together by ``amount`` (0-1) of their gap, each pair across the mouth."""
        if amount <= 0:
            return face
        return set_lip_gaps(face, lip_gaps_mm(face) * (1.0 - amount))

    @staticmethod
    def _move_irises(face: np.ndarray, gaze_deg: np.ndarray) -> None:
        yaw, pitch = np.radians(np.asarray(gaze_deg, np.float64))
        shift = EYEBALL_RADIUS_MM * np.array([-np.sin(yaw), -np.sin(pitch), 0.0])
        face[RIGHT_IRIS_POINTS] += shift
        face[LEFT_IRIS_POINTS] += shift

    @staticmethod
    def _lids(face: np.ndarray, upper: np.ndarray, lower: np.ndarray, iris: np.ndarray,
              blink: float, wide: float, squint: float) -> None:
        """Slide the lids: a blink brings the upper lid (85%) and the lower lid (15%) together."""
        gap = face[lower[1:-1], 1] - face[upper[1:-1], 1]
        move_lids(face, upper, lower, iris, 0.85 * blink * gap - 1.5 * wide * (1.0 - blink),
                  0.15 * blink * gap + 1.5 * squint)


def lip_gaps_mm(face: np.ndarray) -> np.ndarray:
    """(9,) vertical gaps between the facing inner-lip points (corners excluded), never negative."""
    return np.maximum(face[LOWER_INNER_LIP[1:-1], 1] - face[UPPER_INNER_LIP[1:-1], 1], 0.0)


def mouth_aperture_px(landmarks_478: np.ndarray) -> np.ndarray:
    """(N,) mean distance between the facing inner-lip points of (N, 478, 2+) image landmarks, px
    (rotation invariant, unlike :func:`lip_gaps_mm`, which measures in the face's own frame)."""
    points = np.asarray(landmarks_478)
    return np.linalg.norm(points[:, LOWER_INNER_LIP[1:-1], :2] - points[:, UPPER_INNER_LIP[1:-1], :2], axis=2).mean(1)


def set_lip_gaps(face: np.ndarray, target_mm: np.ndarray) -> np.ndarray:
    """The face with its inner-lip gaps at ``target_mm`` (9,): the upper lip takes
    UPPER_LIP_SHARE of each change, the lower lip (the jaw) the rest; points around the mouth
    follow the middle of the lips, the lips themselves their own pair."""
    change = lip_gaps_mm(face) - np.maximum(target_mm, 0.0)  # > 0 closes
    w = _weights()
    out = face.copy()
    middle = change[len(change) // 2]
    out[:, 1] += middle * (UPPER_LIP_SHARE * w["upper"] - (1.0 - UPPER_LIP_SHARE) * w["jaw"] * w["lips"])
    for upper, lower in ((UPPER_INNER_LIP, LOWER_INNER_LIP), (UPPER_OUTER_LIP, LOWER_OUTER_LIP)):
        out[upper[1:-1], 1] = face[upper[1:-1], 1] + UPPER_LIP_SHARE * change
        out[lower[1:-1], 1] = face[lower[1:-1], 1] - (1.0 - UPPER_LIP_SHARE) * change
    return out


def lid_gap_mm(face: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> float:
    """Mean opening of one eye, between its facing lid points."""
    return float(np.mean(face[lower[1:-1], 1] - face[upper[1:-1], 1]))


def move_lids(face: np.ndarray, upper: np.ndarray, lower: np.ndarray, iris: np.ndarray,
              upper_down_mm: np.ndarray | float, lower_up_mm: np.ndarray | float) -> None:
    """Move one eye's lid contours (in place); the iris between them is squeezed with the
    opening (y mapped linearly from the old opening to the new), so a closing lid covers it."""
    inner_up, inner_low = upper[1:-1], lower[1:-1]
    top, bottom = face[inner_up, 1].copy(), face[inner_low, 1].copy()
    new_top, new_bottom = top + upper_down_mm, bottom - lower_up_mm
    old_t, old_b = top.mean(), bottom.mean()
    new_t, new_b = new_top.mean(), new_bottom.mean()
    rel = np.clip((face[iris, 1] - old_t) / max(old_b - old_t, 0.5), -1.0, 2.0)  # an iris stays near its eye
    face[iris, 1] = new_t + rel * (new_b - new_t)
    for row, share in UPPER_LID_FOLDS[int(upper[0])]:
        face[row, 1] += share * (new_top - top)
    face[inner_up, 1], face[inner_low, 1] = new_top, new_bottom
