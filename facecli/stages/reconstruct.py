"""``reconstruct``: a metric 3D face per tracked face and frame, with head pose, one identity per
track and ARKit-named expression coefficients.

1. Landmarks (made here, or a given landmarks file) give MediaPipe's 478 points and a PnP head
   pose per row. :func:`facecli.face3d.metric_faces` lifts each to millimetres in the camera
   (projecting back exactly onto the landmarks) and in the head frame.
2. First read of the landmarks: each track's identity, the per-vertex median of its
   head-frame faces (a bounded, evenly spread sample of frames), and the frame where it is
   most frontal (for ``texture``).
3. Second read: blendshapes against the identity's neutral measures (held near a population
   neutral for short tracks, see :mod:`facecli.blendshapes`), written with the pose, the 68
   points and the vertices, plus the optional meshes, Live Link CSV, texture and preview.

Memory stays bounded: rows stream from the landmarks file in chunks, samples are capped.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import formats, media
from ..atomic import current_umask
from ..blendshapes import UNMEASURED, measure_blendshapes
from ..errors import NoFaceFound, UsageError
from ..exchange import LiveLinkWriter
from ..facemodel import IBUG68_FROM_MESH, mean_face
from ..mesh_export import GlbSequenceWriter, write_obj, write_ply
from ..results import Landmarks, Reconstruction
from .. import mesh_render
from .common import FileStats, PreviewSink, ProgressCallback
from .identity import Identity, camera_of, identities, landmarks_for, metric_rows, rows_with_frames, table_of
from .landmarks import LandmarkOptions, resolve_source

MESH_FORMATS = ("obj", "ply", "glb")
MM_PER_CM = 10.0


@dataclass(frozen=True)
class ReconstructOptions:
    """Settings of the reconstruct stage (the CLI's options, by the same names)."""

    # focal_px is the camera's; still images average the mesh with its mirror image's (less bias)
    landmarks: LandmarkOptions = field(default_factory=lambda: LandmarkOptions(mirror_average=True))
    meshes: str | None = None  # obj | ply: one file per face and frame; glb: one animated file per face
    texture: bool = False  # each track's face texture from its most frontal frame
    livelink: bool = False  # a Live Link Face CSV per track

    def __post_init__(self) -> None:
        if self.meshes not in (None, *MESH_FORMATS):
            raise UsageError(f"--meshes is one of {', '.join(MESH_FORMATS)}")


def reconstruct_rows(batch: Landmarks, camera: np.ndarray, known: dict[int, Identity]) -> tuple[Reconstruction, np.ndarray]:
    """Landmark rows -> reconstruction rows, and each row's gaze (yaw, pitch, degrees)."""
    faces = metric_rows(batch, camera)
    weights = np.zeros((len(batch), 52), np.float32)
    gaze = np.zeros((len(batch), 2), np.float32)
    for face_id in np.unique(batch.face_id):
        rows = batch.face_id == face_id
        reading = measure_blendshapes(faces[rows], known[int(face_id)].neutral)
        weights[rows], gaze[rows] = reading.weights, reading.gaze_deg
    table = Reconstruction(
        frame_index=batch.frame_index, timestamp_s=batch.timestamp_s, face_id=batch.face_id, shot=batch.shot,
        confidence=batch.confidence, rotation_rad=batch.rotation_rad, translation_mm=batch.translation_mm,
        landmarks_68=batch.landmarks_478[:, IBUG68_FROM_MESH, :2], blendshapes=weights,
        vertices_cm=faces / MM_PER_CM,
    )
    return table, gaze


def aux_path(output: Path, face_id: int, suffix: str) -> Path:
    """``<stem>.face<ID><suffix>`` beside ``output`` (``<stem>.reconstruct.parquet``)."""
    stem = output.name.removesuffix(output.suffix).removesuffix(".reconstruct")
    return output.with_name(f"{stem}.face{face_id}{suffix}")


def meshes_folder(output: Path) -> Path:
    stem = output.name.removesuffix(output.suffix).removesuffix(".reconstruct")
    return output.with_name(f"{stem}.meshes")


class _Outputs:
    """The files one job writes besides its table. Each is written atomically; if the job
    fails, those already in place are removed (a table without them must not look complete)."""

    def __init__(self, output: Path, options: ReconstructOptions, known: dict[int, Identity], fps: float):
        self.output, self.options, self.known, self.fps = output, options, known, fps
        self.written: list[Path] = []
        self._glb: dict[int, GlbSequenceWriter] = {}
        self._livelink: dict[int, LiveLinkWriter] = {}
        self._mesh_tmp: Path | None = None
        if options.meshes in ("obj", "ply"):
            self._mesh_tmp = Path(tempfile.mkdtemp(prefix=f".{meshes_folder(output).name}.", dir=output.parent))
            self._mesh_tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would outlive the rename

    def add(self, rows: Reconstruction, gaze_deg: np.ndarray) -> None:
        for face_id in np.unique(rows.face_id):
            mask = rows.face_id == face_id
            self._add_track(int(face_id), rows[mask], gaze_deg[mask])

    def _add_track(self, face_id: int, rows: Reconstruction, gaze_deg: np.ndarray) -> None:
        if self.options.livelink:
            if face_id not in self._livelink:
                self._livelink[face_id] = LiveLinkWriter(self._claim(aux_path(self.output, face_id, ".livelink.csv")),
                                                         self.fps).__enter__()
            self._livelink[face_id].write(rows.timestamp_s, rows.blendshapes, rows.head_pose_deg, gaze_deg)
        if self.options.meshes == "glb":
            if face_id not in self._glb:
                self._glb[face_id] = GlbSequenceWriter(self._claim(aux_path(self.output, face_id, ".glb")),
                                                       self.known[face_id].face_mm / MM_PER_CM, mean_face().triangles)
            for vertices, time_s in zip(rows.vertices_cm, rows.timestamp_s):
                self._glb[face_id].add(vertices, float(time_s))
        elif self._mesh_tmp is not None:
            write = write_obj if self.options.meshes == "obj" else write_ply
            for vertices, frame in zip(rows.vertices_cm, rows.frame_index):
                write(self._mesh_tmp / f"face{face_id}_frame{frame + 1:06d}.{self.options.meshes}", vertices,
                      mean_face().triangles)

    def _claim(self, path: Path) -> Path:
        self.written.append(path)
        return path

    def close(self) -> None:
        for writer in self._livelink.values():
            writer.__exit__(None, None, None)
        for glb in self._glb.values():
            glb.close()
        if self._mesh_tmp is not None:
            target = self._claim(meshes_folder(self.output))
            shutil.rmtree(target, ignore_errors=True)
            self._mesh_tmp.rename(target)
            self._mesh_tmp = None

    def abort(self, exc: BaseException) -> None:
        for writer in self._livelink.values():
            writer.__exit__(type(exc), exc, None)
        for glb in self._glb.values():
            glb.discard()
        if self._mesh_tmp is not None:
            shutil.rmtree(self._mesh_tmp, ignore_errors=True)
        for path in self.written:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def reconstruct_file(source: Path, output: Path, options: ReconstructOptions, preview: Path | None = None,
                     progress: ProgressCallback | None = None) -> FileStats:
    """The batch worker: media, a faces file or a landmarks file -> ``output`` and its extras."""
    source = Path(source)
    media_path, _ = resolve_source(source, "landmarks" if formats.stage_of(source) == "landmarks" else "faces")
    with landmarks_for(source, output, options.landmarks, progress if formats.stage_of(source) != "landmarks" else None) \
            as landmarks_path:
        marks_header = formats.read_header(landmarks_path)
        camera = camera_of(marks_header)
        known = identities(landmarks_path, camera)
        if not known:
            raise NoFaceFound("no face found; check the file, or lower --min-score / --min-size", source)
        info = media.probe(media_path)
        header = formats.make_header("reconstruct", marks_header["backend"], _settings(options, marks_header, camera),
                                     media_path, info, source)
        header["identities_cm"] = {str(k): np.round(v.face_mm / MM_PER_CM, 4).tolist() for k, v in known.items()}
        header["unmeasured_blendshapes"] = list(UNMEASURED)
        return _write(landmarks_path, media_path, info, output, header, camera, known, options, preview)


def _settings(options: ReconstructOptions, marks_header: dict[str, Any], camera: np.ndarray) -> dict[str, Any]:
    return {**asdict(options), "focal_px": float(camera[0, 0]), "landmarks_used": marks_header["settings"]}


def _write(landmarks_path: Path, media_path: Path, info: media.MediaInfo, output: Path, header: dict[str, Any],
           camera: np.ndarray, known: dict[int, Identity], options: ReconstructOptions,
           preview: Path | None) -> FileStats:
    stats, ids = FileStats(), set()
    extras = _Outputs(output, options, known, info.fps or 25.0)
    drawing = mesh_render.PreviewDrawing(camera) if preview else None
    sink = PreviewSink(preview, info) if preview else None
    textures = mesh_render.TextureCollector({k: v.frontal_frame for k, v in known.items()},
                                            {k: v.face_mm / MM_PER_CM for k, v in known.items()}) \
        if options.texture else None
    writer = formats.TableWriter(output, "reconstruct", header)
    try:
        for frame, batch in rows_with_frames(landmarks_path, media_path, bool(preview or textures)):
            rows, gaze = reconstruct_rows(batch, camera, known)
            writer.write(rows)
            extras.add(rows, gaze)
            ids.update(rows.face_id.tolist())
            if frame is not None:
                stats.frames += 1
                if textures:
                    textures.offer(frame, batch)
                if sink:
                    sink.add(drawing.draw(frame.image, rows))
        if textures:
            extras.written += textures.write(lambda face_id, suffix: aux_path(output, face_id, suffix))
        if sink:
            sink.close()
            sink = None
        extras.close()
        writer.close(face_ids=len(ids))
    except BaseException as exc:
        writer.abort(exc)
        extras.abort(exc)
        if sink:
            sink.close(exc)
        raise
    stats.rows, stats.faces = writer.rows, len(ids)
    stats.frames = stats.frames or int(info.frame_count or 1)
    return stats


def reconstruct(path: str | Path, **options: Any) -> Reconstruction:
    """Reconstruct every face of an image, a video, a faces file or a landmarks file.

    Keyword options are :class:`ReconstructOptions` fields and landmark options (``focal_px``,
    ``smooth``, ...). Returns the table (the extra files are not written).
    """
    return table_of(reconstruct_file, path, "reconstruct", ReconstructOptions, options)
