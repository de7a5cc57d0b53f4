"""Geometry shared by the stages: boxes, similarity fits, camera pose, Euler angles."""

from __future__ import annotations

import cv2
import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of boxes given as (x, y, w, h) px."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0, None], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1, None], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_containment(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)): the share of each box of b that lies inside each box of a."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, 0, None] + a[:, 2, None], b[None, :, 0] + b[None, :, 2])
                 - np.maximum(a[:, 0, None], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 1, None] + a[:, 3, None], b[None, :, 1] + b[None, :, 3])
                 - np.maximum(a[:, 1, None], b[None, :, 1]), 0, None)
    return iw * ih / np.maximum(b[None, :, 2] * b[None, :, 3], 1e-12)


def box_centres(boxes_xywh: np.ndarray) -> np.ndarray:
    """(N, 2) centres px of (N, 4) boxes (x, y, w, h)."""
    return boxes_xywh[:, :2] + boxes_xywh[:, 2:] / 2


def points_in_boxes(points_xy: np.ndarray, boxes_xywh: np.ndarray) -> np.ndarray:
    """(len(points), len(boxes)) bool: whether each point lies in each box (edges included)."""
    points = np.asarray(points_xy, np.float64).reshape(-1, 1, 2)
    boxes = np.asarray(boxes_xywh, np.float64).reshape(1, -1, 4)
    return ((boxes[..., :2] <= points) & (points <= boxes[..., :2] + boxes[..., 2:])).all(axis=2)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, contained: float = 1.01) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first.

    A box is also dropped when more than ``contained`` of it lies inside a better one: a
    multi-scale scan finds parts of a big face (an eye and a brow) as small faces.
    """
    order = np.argsort(-np.asarray(scores))
    keep: list[int] = []
    while order.size:
        best = order[0]
        keep.append(int(best))
        rest = boxes[order[1:]]
        drop = (box_iou(boxes[best], rest)[0] >= iou_threshold) | (box_containment(boxes[best], rest)[0] > contained)
        order = order[1:][~drop]
    return np.array(keep, dtype=np.int64)


def square_box(box_xywh: np.ndarray, scale: float) -> np.ndarray:
    """A square box with side ``scale * max(w, h)`` around the centre of ``box_xywh``."""
    x, y, w, h = box_xywh
    side = scale * max(w, h)
    return np.array([x + w / 2 - side / 2, y + h / 2 - side / 2, side, side])


def points_box(points_xy: np.ndarray) -> np.ndarray:
    """Tight (x, y, w, h) box around 2D points."""
    lo, hi = points_xy.min(axis=0), points_xy.max(axis=0)
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, scale: bool = True):
    """Least-squares similarity ``dst ≈ s * R @ src + t`` (Umeyama 1991), any dimension.

    Returns (s, R, t). ``weights`` (N,) weigh each correspondence.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(len(sig))
    d[-1] = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0
    rot = u @ np.diag(d) @ vt
    var_s = (w * (xs**2).sum(axis=1)).sum()
    s = float((sig * d).sum() / var_s) if scale else 1.0
    t = mu_d - s * rot @ mu_s
    return s, rot, t


def camera_matrix(width: int, height: int, focal_px: float | None = None) -> np.ndarray:
    """Pinhole intrinsics; the default focal length is max(width, height) px (about 53° across)."""
    f = float(focal_px or max(width, height))
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64)


def solve_pose(model_mm: np.ndarray, image_px: np.ndarray, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rigid pose of a 3D model (mm) from its 2D projections (px): rotation matrix and translation (mm).

    The model's axes follow OpenCV's camera (x right, y down, z forward), so R = I is a face
    looking straight at the camera.
    """
    obj = np.ascontiguousarray(model_mm, np.float64).reshape(-1, 1, 3)
    img = np.ascontiguousarray(image_px, np.float64).reshape(-1, 1, 2)
    # SQPnP finds the global minimum directly; an iterative refinement changed nothing measurable.
    ok, rvec, tvec = cv2.solvePnP(obj, img, camera, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        return np.eye(3), np.full(3, np.nan)
    rot, _ = cv2.Rodrigues(rvec)
    return rot, tvec.ravel()


def euler_xyz(rot: np.ndarray) -> np.ndarray:
    """Angles (rx, ry, rz) in radians with rot = Rx(rx) @ Ry(ry) @ Rz(rz) (OpenFace's convention)."""
    ry = np.arcsin(np.clip(rot[0, 2], -1.0, 1.0))
    rx = np.arctan2(-rot[1, 2], rot[2, 2])
    rz = np.arctan2(-rot[0, 1], rot[0, 0])
    return np.array([rx, ry, rz])


def rotation_from_euler_xyz(angles: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_xyz`; (..., 3) angles give (..., 3, 3) matrices."""
    rx, ry, rz = np.moveaxis(np.asarray(angles, np.float64), -1, 0)
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    zero, one = np.zeros_like(rx), np.ones_like(rx)

    def matrix(*rows: tuple) -> np.ndarray:
        return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)

    rot_x = matrix((one, zero, zero), (zero, cx, -sx), (zero, sx, cx))
    rot_y = matrix((cy, zero, sy), (zero, one, zero), (-sy, zero, cy))
    rot_z = matrix((cz, -sz, zero), (sz, cz, zero), (zero, zero, one))
    return rot_x @ rot_y @ rot_z


def curve_y_at(xs: np.ndarray, curve_px: np.ndarray) -> np.ndarray:
    """y of a polyline (K, 2) at ``xs``, whichever way it runs (np.interp needs increasing x;
    the left eye's contours, for one, run right to left)."""
    order = np.argsort(curve_px[:, 0])
    return np.interp(xs, curve_px[order, 0], curve_px[order, 1])
