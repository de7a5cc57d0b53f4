"""The embedded default: MediaPipe's BlazeFace detectors and 478-point face mesh.

Both models ship inside the mediapipe==0.10.21 wheel (legacy ``mp.solutions`` API), so this
backend runs offline on a CPU with nothing to download.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np

from ..geometry import box_centres, nms, square_box
from ..media import Frame
from . import Detector, FrameDetections, LandmarkModel, LandmarkSession

os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ start-up chatter
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Sizes of faces each model finds reliably, as fractions of the side of the image it sees
# (measured on real faces pasted at known sizes): full range from about 1/11, short range from 1/4.
_FULL_RANGE_MIN_FRACTION = 0.14
_TILE_MAX_FRACTION = 0.5  # the largest face a tile level is for, as a fraction of its tiles' side
_OVERLAP_SPARE = 1.2  # tiles overlap by the largest face of their level times this
# A followed face is looked for in a square around its last box, scaled to a model's input:
# (model, its input px, square side in box sides). The face fills about half of the short-range
# model's image and a quarter of the full-range one's, the sizes each finds best.
_FOLLOW_STEPS = (("short", 128, 2.0), ("full", 192, 4.0))
FOLLOW_MIN_SCORE = 0.3  # a followed face is kept from this crop score (new faces need --min-score)
MAX_IDLE_GRAPHS = 4  # face mesh graphs a model keeps for its next sessions, per mode


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Mute fd 2 while MediaPipe's C++ side starts: it logs start-up chatter there directly."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _solutions() -> Any:
    with quiet_native_logs():
        import mediapipe as mp
    return mp.solutions


def _warm(model: Any) -> Any:
    """Build a MediaPipe solution and run it once on a blank image, quietly (first use logs too)."""
    with quiet_native_logs():
        model.process(np.zeros((64, 64, 3), np.uint8))
    return model


class _Graph:
    """A legacy ``mp.solutions`` graph (one image in, one list of protos out) called without
    ``process``, which builds a namedtuple class on every call (a tenth of a face-mesh fit).
    Uses the internals of the pinned mediapipe==0.10.21, as ``process`` does."""

    def __init__(self, solution: Any, output: str):
        from mediapipe.python import packet_creator, packet_getter
        from mediapipe.python._framework_bindings.image_frame import ImageFormat

        self.solution, self.output = _warm(solution), output
        self._image_packet = functools.partial(packet_creator.create_image, image_format=ImageFormat.SRGB)
        self._proto_list = packet_getter.get_proto_list

    def __call__(self, image_rgb: np.ndarray) -> list:
        solution = self.solution
        solution._graph_outputs.clear()
        solution._simulated_timestamp += 33333  # as process() does: a 30 fps clock
        packet = self._image_packet(np.ascontiguousarray(image_rgb)).at(solution._simulated_timestamp)
        solution._graph.add_packet_to_input_stream(stream="image", packet=packet)
        solution._graph.wait_until_idle()
        found = solution._graph_outputs.get(self.output)
        return [] if found is None or found.is_empty() else self._proto_list(found)

    def close(self) -> None:
        self.solution.close()


def _mediapipe_problem() -> str | None:
    try:
        _solutions().face_mesh  # noqa: B018 - the legacy API is what ships the models
    except (ImportError, AttributeError) as exc:
        return f"mediapipe==0.10.21 is needed (pip install 'mediapipe==0.10.21'): {exc}"
    return None


def tile_levels(frame_side_px: int, min_face_px: float) -> list[tuple[int, int]]:
    """(tile side, overlap) px of each level of the scan pyramid, largest first, after the whole frame.

    A level with tiles of side T finds faces from ``_FULL_RANGE_MIN_FRACTION * T``; the faces it
    is there for reach up to where the level above takes over, ``_FULL_RANGE_MIN_FRACTION`` of
    that level's side. Its tiles overlap by that much, a fifth to spare (a face's box can come
    out larger), and by at most half a tile: each such face lies whole in some tile. Each next
    level is small enough to leave no gap below the previous one, and the last reaches
    ``min_face_px``.
    """
    levels: list[tuple[int, int]] = []
    above = int(frame_side_px)
    while _FULL_RANGE_MIN_FRACTION * above > min_face_px:
        largest_face = _FULL_RANGE_MIN_FRACTION * above
        side = max(math.ceil(largest_face / _TILE_MAX_FRACTION), math.floor(min_face_px / _FULL_RANGE_MIN_FRACTION))
        levels.append((side, math.ceil(min(_TILE_MAX_FRACTION * side, _OVERLAP_SPARE * largest_face))))
        above = side
    return levels


def tile_origins(length: int, side: int, overlap: int) -> list[int]:
    """Start positions of tiles of ``side`` px covering ``length`` px, neighbours sharing at
    least ``overlap`` px (an integer below ``side``)."""
    if side >= length:
        return [0]
    count = math.ceil((length - side) / (side - overlap)) + 1
    return [round(i * (length - side) / (count - 1)) for i in range(count)]


class BlazeFaceDetector(Detector):
    """BlazeFace full- and short-range on the whole frame, plus full-range tiles for small faces.

    MediaPipe's detector alone misses small faces and most faces in group photos; scanning
    overlapping tiles at a few scales and merging by NMS finds them.
    """

    reusable = True
    follows = True

    def __init__(self, min_score: float = 0.5, min_size: float = 40.0, max_faces: int = 0):
        self.min_score, self.min_size, self.max_faces = float(min_score), float(min_size), int(max_faces)
        self._short, self._full = self._graphs(self.min_score)
        self._follow_graphs: dict[str, _Graph] | None = None  # built on the first detect_near

    @staticmethod
    def _graphs(min_score: float) -> tuple[_Graph, _Graph]:
        """(short range, full range) graphs that report faces from ``min_score``."""
        sol = _solutions()
        with quiet_native_logs():
            return tuple(  # type: ignore[return-value]
                _Graph(sol.face_detection.FaceDetection(model_selection=model, min_detection_confidence=min_score),
                       "detections")
                for model in (0, 1)
            )

    @classmethod
    def problem(cls) -> str | None:
        return _mediapipe_problem()

    def settings(self) -> dict[str, Any]:
        return {"min_score": self.min_score, "min_size": self.min_size, "max_faces": self.max_faces}

    def detect(self, image_rgb: np.ndarray) -> FrameDetections:
        h, w = image_rgb.shape[:2]
        found = [self._run(self._short, image_rgb, 0, 0, None), self._run(self._full, image_rgb, 0, 0, None)]
        for side, overlap in tile_levels(max(h, w), self.min_size):
            for y0 in tile_origins(h, side, overlap):
                for x0 in tile_origins(w, side, overlap):
                    tile = np.ascontiguousarray(image_rgb[y0 : y0 + side, x0 : x0 + side])
                    found.append(self._run(self._full, tile, x0, y0, (w, h)))
        return self._filtered(FrameDetections.concat(found), self.min_score)

    def detect_near(self, image_rgb: np.ndarray, boxes_xywh: np.ndarray) -> FrameDetections:
        """Each box's face found again on a crop around it, by the short-range model, else the
        full-range one (small or turned faces): about 1.5 ms a face, against ~80 ms for a full
        scan at 720x528. Of a crop's detections the one nearest its centre is the face.

        A crop scores a face lower than a scan does (a 0.8 small face in a scan is ~0.6 in its
        crop), so a face already found is kept from ``FOLLOW_MIN_SCORE``.
        """
        follow_score = min(self.min_score, FOLLOW_MIN_SCORE)
        if self._follow_graphs is None:
            self._follow_graphs = dict(zip(("short", "full"), self._graphs(follow_score)))
        found = []
        for box in boxes_xywh:
            for model, input_px, crop_sides in _FOLLOW_STEPS:
                face = self._nearest_in_crop(self._follow_graphs[model], input_px, image_rgb,
                                             square_box(box, crop_sides))
                if face is not None:
                    found.append(face)
                    break
        return self._filtered(FrameDetections.concat(found), follow_score)

    def _nearest_in_crop(self, model: Any, input_px: int, image_rgb: np.ndarray,
                         square_xywh: np.ndarray) -> FrameDetections | None:
        x0, y0 = int(round(square_xywh[0])), int(round(square_xywh[1]))
        side = max(int(round(square_xywh[2])), 1)
        dets = self._run(model, square_crop(image_rgb, x0, y0, side, input_px), 0, 0, None)
        if not len(dets):
            return None
        best = dets[int(np.argmin(np.linalg.norm(box_centres(dets.boxes_xywh) - input_px / 2, axis=1)))]
        scale = input_px / side
        return FrameDetections(best.boxes_xywh[None] / scale + np.float32([x0, y0, 0, 0]), best.scores[None],
                               best.keypoints_6[None] / scale + np.float32([x0, y0]))

    def _filtered(self, dets: FrameDetections, min_score: float) -> FrameDetections:
        """Detections of at least ``min_size`` px and ``min_score``, duplicates merged by NMS, best first."""
        # MediaPipe applies its own threshold loosely: enforce ours here.
        wanted = (np.maximum(dets.boxes_xywh[:, 2], dets.boxes_xywh[:, 3]) >= self.min_size) \
            & (dets.scores >= min_score)
        dets = dets[wanted]
        keep = nms(dets.boxes_xywh, dets.scores, 0.3, contained=0.6)
        if self.max_faces > 0:
            keep = keep[: self.max_faces]
        return dets[keep]

    @staticmethod
    def _run(model: Any, image: np.ndarray, x0: int, y0: int, frame_size: tuple[int, int] | None) -> FrameDetections:
        """Detections of one model on one image or tile, in frame px.

        For a tile (``frame_size`` given), faces cut by an inner tile edge are dropped: the
        overlapping neighbour sees them whole.
        """
        detections = model(image)
        if not detections:
            return FrameDetections.empty()
        th, tw = image.shape[:2]
        boxes, scores, keypoints = [], [], []
        for det in detections:
            rb = det.location_data.relative_bounding_box
            box = np.array([rb.xmin * tw, rb.ymin * th, rb.width * tw, rb.height * th])
            if frame_size is not None and _touches_inner_edge(box, x0, y0, tw, th, frame_size):
                continue
            boxes.append(box + [x0, y0, 0, 0])
            scores.append(det.score[0])
            keypoints.append([(k.x * tw + x0, k.y * th + y0) for k in det.location_data.relative_keypoints])
        if not boxes:
            return FrameDetections.empty()
        return FrameDetections(np.float32(boxes), np.float32(scores), np.float32(keypoints))


def square_crop(image: np.ndarray, x0: int, y0: int, side: int, out_px: int) -> np.ndarray:
    """The square (x0, y0, side) px of ``image`` scaled to ``out_px``, black where it leaves the
    image; shrunk by area averaging (warpAffine has no such mode, and aliasing costs detections)."""
    h, w = image.shape[:2]
    inside = image[max(y0, 0) : min(y0 + side, h), max(x0, 0) : min(x0 + side, w)]
    pads = (max(-y0, 0), max(y0 + side - h, 0), max(-x0, 0), max(x0 + side - w, 0))
    if inside.size == 0:
        return np.zeros((out_px, out_px, image.shape[2]), image.dtype)
    if any(pads):
        inside = cv2.copyMakeBorder(inside, *(min(p, side) for p in pads), cv2.BORDER_CONSTANT, value=0)
    interpolation = cv2.INTER_AREA if side > out_px else cv2.INTER_LINEAR
    return cv2.resize(inside, (out_px, out_px), interpolation=interpolation)


def _touches_inner_edge(box: np.ndarray, x0: int, y0: int, tw: int, th: int, frame_size: tuple[int, int]) -> bool:
    margin = 2.0
    x, y, bw, bh = box
    fw, fh = frame_size
    return bool(
        (x0 > 0 and x < margin)
        or (y0 > 0 and y < margin)
        or (x0 + tw < fw and x + bw > tw - margin)
        or (y0 + th < fh and y + bh > th - margin)
    )


# A serialized NormalizedLandmark as the face mesh writes it: x, y, z set, nothing else.
_SERIALIZED_LANDMARK = np.dtype([("tag", "u1"), ("size", "u1"), ("x_tag", "u1"), ("x", "<f4"),
                                 ("y_tag", "u1"), ("y", "<f4"), ("z_tag", "u1"), ("z", "<f4")])
_LANDMARK_TAGS = {"tag": 0x0A, "size": 15, "x_tag": 0x0D, "y_tag": 0x15, "z_tag": 0x1D}


def landmark_array(landmark_list: Any) -> np.ndarray:
    """(N, 3) float64 of a NormalizedLandmarkList, read from its wire bytes in one go.

    Reading 478 points through protobuf attributes costs about as much as a tenth of a fit;
    any list not in the plain x/y/z layout falls back to that.
    """
    raw = landmark_list.SerializeToString()
    if raw and len(raw) % _SERIALIZED_LANDMARK.itemsize == 0:
        records = np.frombuffer(raw, _SERIALIZED_LANDMARK)
        if all((records[name] == value).all() for name, value in _LANDMARK_TAGS.items()):
            return np.stack([records["x"], records["y"], records["z"]], axis=1).astype(np.float64)
    return np.array([(p.x, p.y, p.z) for p in landmark_list.landmark], np.float64)


class FaceMeshSession(LandmarkSession):
    """One MediaPipe face mesh fed with a square crop around one face.

    In video mode the mesh tracks: it reuses its last landmarks to place the next region of
    interest and runs its own detector only when it loses the face, which is what makes it fast.
    Its graph outlives it: ``close`` hands the graph back to the model (``idle``), whose next
    session takes it, reset, instead of building one (about 25 ms).
    """

    def __init__(self, video: bool, crop_px: int, idle: list[_Graph]):
        self.crop_px, self._idle = crop_px, idle
        self._new_graph = not idle  # a new graph's first fit logs from C++: it is muted
        if idle:
            self._mesh: _Graph | None = idle.pop()  # reset when handed back
            return
        with quiet_native_logs():
            self._mesh = _Graph(_solutions().face_mesh.FaceMesh(
                static_image_mode=not video, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=0.5, min_tracking_confidence=0.5,
            ), "multi_face_landmarks")

    def fit(self, image_rgb: np.ndarray, roi_xywh: np.ndarray) -> np.ndarray | None:
        return self.fit_frame(Frame(0, 0.0, image_rgb), roi_xywh)

    def fit_frame(self, frame: Frame, roi_xywh: np.ndarray) -> np.ndarray | None:
        x0, y0, side = float(roi_xywh[0]), float(roi_xywh[1]), float(roi_xywh[2])
        scale = self.crop_px / side
        crop = frame.crop_rgb(np.float32([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]]),
                              (self.crop_px, self.crop_px))
        if self._new_graph:
            with quiet_native_logs():  # it warns about non-square ROIs on first use, from C++
                faces = self._mesh(crop)
            self._new_graph = False
        else:
            faces = self._mesh(crop)
        if not faces:
            return None
        points = landmark_array(faces[0])
        points *= self.crop_px / scale
        points[:, 0] += x0
        points[:, 1] += y0
        return points

    def reset(self) -> None:
        # A blank image loses the tracked face: the next fit starts from its region of interest
        # alone, as a new session would, not from where the last track's face was.
        with quiet_native_logs():
            self._mesh(np.zeros((64, 64, 3), np.uint8))

    def close(self) -> None:
        if self._mesh is None:
            return
        if len(self._idle) < MAX_IDLE_GRAPHS:
            self.reset()
            self._idle.append(self._mesh)
        else:
            self._mesh.close()
        self._mesh = None


class FaceMeshModel(LandmarkModel):
    """MediaPipe face mesh with irises (478 points), run on each face's crop."""

    reusable = True

    def __init__(self, crop_px: int = 192):  # the mesh model's own input size
        self.crop_px = int(crop_px)
        self._idle: dict[bool, list[_Graph]] = {True: [], False: []}  # by video mode

    @classmethod
    def problem(cls) -> str | None:
        return _mediapipe_problem()

    def settings(self) -> dict[str, Any]:
        return {"crop_px": self.crop_px}

    def open_session(self, video: bool) -> LandmarkSession:
        return FaceMeshSession(video, self.crop_px, self._idle[video])
