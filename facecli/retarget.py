"""A driving face's motion, retargeted onto a source face (``reenact``).

Both faces are brought into the mean face's frame (mm) by a similarity fit on the rigid
points (:class:`facecli.face_rig.FaceRig`), which removes head pose and size. Then:

* **Relative** (default): the driver's change since its reference frame (shape, and head
  pose angle by angle) is added to the source's own face, so the source keeps its shape and
  proportions whoever drives it. **Absolute** (same identity): the reference is the source
  itself, so the source takes on the driver's shape and pose.
* **Parts** move separately (:func:`facecli.face_rig.part_weights`): ``mouth``, ``eyes``,
  ``expression`` (brows, cheeks, nose) and ``pose`` (head rotation).
* **Retargeting**: lip and eye openness are mapped into the source's own ranges instead of
  added. Lip gaps are the driver's, as a fraction of its mouth width, times the source's
  mouth width (a source smiling with parted lips still closes them when the driver does);
  eye openness is the driver's fraction of its own open eye (its 90th percentile) times the
  source's open eye, so narrow eyes neither over-close nor stay half shut. Gaze moves the
  irises by the driver's iris shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .face_rig import (EYEBALL_RADIUS_MM, INNER_BROWS, JAW_FULL_GAP_MM, LEFT_BROW, LEFT_IRIS_POINTS, LEFT_LOWER_LID,
                       LEFT_UPPER_LID, RIGHT_BROW, RIGHT_IRIS_POINTS, RIGHT_LOWER_LID, RIGHT_UPPER_LID, FaceRig,
                       lid_gap_mm, lip_gaps_mm, mouth_aperture_px, move_lids, part_weights, set_lip_gaps)
from .results import FACE_CONTROLS, Landmarks

PARTS = ("expression", "mouth", "eyes", "pose")
EYES = ((RIGHT_UPPER_LID, RIGHT_LOWER_LID, RIGHT_IRIS_POINTS, (33, 133)),
        (LEFT_UPPER_LID, LEFT_LOWER_LID, LEFT_IRIS_POINTS, (263, 362)))
MAX_EYE_RATIO = 1.3  # wide-eyed: at most 30% more open than the source's own open eye


def mouth_width_mm(face: np.ndarray) -> float:
    return float(np.linalg.norm(face[291, :2] - face[61, :2]))


def eye_openness_mm(face: np.ndarray) -> np.ndarray:
    """(2,) lid gaps of the right and left eye."""
    return np.array([lid_gap_mm(face, upper, lower) for upper, lower, _, _ in EYES])


def iris_offsets_mm(face: np.ndarray) -> np.ndarray:
    """(2, 2) x, y of each iris centre from the middle of its eye's corners."""
    return np.array([face[iris[0], :2] - face[list(corners), :2].mean(axis=0) for _, _, iris, corners in EYES])


@dataclass
class DriverFrame:
    """One driving frame in the mean face's frame."""

    face_mm: np.ndarray  # (478, 3)
    rotation_rad: np.ndarray  # (3,) head pose rx, ry, rz (the landmarks file's pose_R*)

    @classmethod
    def from_landmarks(cls, landmarks_478_px: np.ndarray, rotation_rad: np.ndarray) -> DriverFrame:
        """From one row of a landmarks file: the mesh, and the head pose the landmarks stage
        solved by PnP (steadier in pitch than the fit on MediaPipe's relative depth)."""
        return cls(FaceRig(landmarks_478_px).shape_mm, np.asarray(rotation_rad, np.float64))


@dataclass
class Transferred:
    face_mm: np.ndarray  # (478, 3) the source's face in its own frame
    head_pose_deg: np.ndarray  # (3,) yaw, pitch, roll added to the source's pose
    lid_closure: tuple[float, float]  # right, left: 0 open .. 1 shut (for painting the lids)


class Retargeter:
    """Maps driver frames onto one source face."""

    def __init__(self, source: FaceRig, reference: DriverFrame, driver_open_eyes_mm: np.ndarray,
                 parts: tuple[str, ...] = PARTS, expression_scale: float = 1.0, pose_scale: float = 1.0,
                 absolute: bool = False):
        self.source = source
        self.parts = parts
        self.expression_scale, self.pose_scale = expression_scale, pose_scale
        # mm of the source per mm of the driver, eye to eye (the fits already removed face size)
        self.k = float(np.linalg.norm(np.subtract(*source.shape_mm[[468, 473], :2]))
                       / np.linalg.norm(np.subtract(*reference.face_mm[[468, 473], :2])))
        if absolute:
            reference = DriverFrame(source.shape_mm / self.k, source.pose_rad)
        self.reference = reference
        self.driver_open_eyes = np.maximum(driver_open_eyes_mm, 1e-3)
        self.source_open_eyes = np.maximum(eye_openness_mm(source.shape_mm), 1e-3)
        weights = part_weights()
        self.weight = sum((weights[p] for p in parts if p in weights), np.zeros(len(source.shape_mm)))

    def transfer(self, frame: DriverFrame) -> Transferred:
        delta = (frame.face_mm - self.reference.face_mm) * self.k
        face = self.source.shape_mm + self.expression_scale * self.weight[:, None] * delta
        if "mouth" in self.parts:
            gaps = lip_gaps_mm(frame.face_mm) / mouth_width_mm(frame.face_mm)
            face = set_lip_gaps(face, self.expression_scale * gaps * mouth_width_mm(self.source.shape_mm))
        closure = (0.0, 0.0)
        if "eyes" in self.parts:
            closure = self._eyes(face, frame)
        pose = np.zeros(3)
        if "pose" in self.parts:
            # angle by angle, so each of the output's yaw, pitch and roll follows the driver's
            rx, ry, rz = np.degrees(frame.rotation_rad - self.reference.rotation_rad)
            pose = self.pose_scale * np.array([ry, rx, rz])
        return Transferred(face, pose, closure)

    def _eyes(self, face: np.ndarray, frame: DriverFrame) -> tuple[float, float]:
        """Lids to the driver's openness in the source's range; irises shifted as the driver's."""
        ratio = np.clip(eye_openness_mm(frame.face_mm) / self.driver_open_eyes, 0.0, MAX_EYE_RATIO)
        shift = (iris_offsets_mm(frame.face_mm) - iris_offsets_mm(self.reference.face_mm)) * self.k
        closure = []
        for (upper, lower, iris, _), r, open_mm, (dx, dy) in zip(EYES, ratio, self.source_open_eyes, shift):
            # from the source's own open eye (the driver's lids may have crossed in the delta)
            face[upper] = self.source.shape_mm[upper]
            face[lower] = self.source.shape_mm[lower]
            face[iris] = self.source.shape_mm[iris] + [dx, dy, 0.0]
            change = open_mm - r * open_mm  # > 0 closes
            move_lids(face, upper, lower, iris, 0.85 * change, 0.15 * change)
            closure.append(float(np.clip(1.0 - r, 0.0, 1.0)))
        return closure[0], closure[1]


def estimate_controls(moved: Transferred, source: FaceRig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate face controls (FACE_CONTROLS order), head pose and gaze (degrees) of a
    transferred face, for the motion file: each control read back from the geometry the rig
    gives it (mouth opening, width and corners; brow height; lid closure; iris shift)."""
    face, rest = moved.face_mm, source.shape_mm
    c = dict.fromkeys(FACE_CONTROLS, 0.0)
    c["jaw_open"] = lip_gaps_mm(face).mean() / JAW_FULL_GAP_MM
    width = mouth_width_mm(face) / mouth_width_mm(rest) - 1.0
    c["lip_stretch"], c["lip_pucker"] = width / 0.12, -width / 0.2
    corners = float(np.mean(face[[61, 291], 1] - rest[[61, 291], 1]) - 0.5 * lip_gaps_mm(face).mean())
    c["smile"], c["frown"] = -corners / 3.5, corners / 3.0
    brow_points = np.concatenate([RIGHT_BROW, LEFT_BROW])
    brows = float(np.mean(face[brow_points, 1] - rest[brow_points, 1]))
    c["brow_raise"], c["brow_down"] = -brows / 5.0, brows / 3.0
    c["brow_inner_up"] = -float(np.mean(face[INNER_BROWS, 1] - rest[INNER_BROWS, 1])) / 4.0
    c["blink_right"], c["blink_left"] = moved.lid_closure
    controls = np.clip([c[name] for name in FACE_CONTROLS], 0.0, 1.0)
    shift = iris_offsets_mm(face).mean(axis=0) - iris_offsets_mm(rest).mean(axis=0)
    gaze = -np.degrees(np.arcsin(np.clip(shift / EYEBALL_RADIUS_MM, -1.0, 1.0)))
    return controls, moved.head_pose_deg, gaze


# --------------------------------------------------------------------------- how well an output follows


def inter_ocular_px(landmarks_478: np.ndarray) -> np.ndarray:
    """(N,) distance between the iris centres of (N, 478, 2+) landmarks."""
    return np.linalg.norm(landmarks_478[:, 468, :2] - landmarks_478[:, 473, :2], axis=1)


def eye_openness(landmarks_478: np.ndarray) -> np.ndarray:
    """(N,) mean lid gap of both eyes over the inter-ocular distance (in the image; roll does not matter)."""
    gaps = [np.linalg.norm(landmarks_478[:, lower[1:-1], :2] - landmarks_478[:, upper[1:-1], :2], axis=2).mean(axis=1)
            for upper, lower, _, _ in EYES]
    return (gaps[0] + gaps[1]) / 2 / inter_ocular_px(landmarks_478)


def agreement(driving: Landmarks, output: Landmarks) -> dict[str, float]:
    """Pearson correlations between the driving track's and the output face's series (mouth
    aperture and eye openness over the inter-ocular distance, yaw, pitch), over the frames
    both have; each file's longest track is taken. ``frames``: how many were compared."""
    def longest(marks: Landmarks) -> Landmarks:
        ids, counts = np.unique(marks.face_id, return_counts=True)
        return marks[marks.face_id == ids[np.argmax(counts)]]

    d, o = longest(driving), longest(output)
    frames = np.intersect1d(d.frame_index, o.frame_index)
    d, o = d[np.searchsorted(d.frame_index, frames)], o[np.searchsorted(o.frame_index, frames)]
    series = {
        "mouth": lambda m: mouth_aperture_px(m.landmarks_478) / inter_ocular_px(m.landmarks_478),
        "eyes": lambda m: eye_openness(m.landmarks_478),
        "yaw": lambda m: m.head_pose_deg[:, 0],
        "pitch": lambda m: m.head_pose_deg[:, 1],
    }
    out = {name: float(np.corrcoef(f(d), f(o))[0, 1]) for name, f in series.items()}
    return {**out, "frames": float(frames.size)}
