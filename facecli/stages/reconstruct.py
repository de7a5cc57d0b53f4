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

from .. import media, mesh_render
from ..atomic import current_umask
from ..blendshapes import UNMEASURED
from ..errors import InputError, OutputError, UsageError
from ..exchange import LiveLinkWriter
from ..facemodel import mean_face
from ..mesh_export import MAX_GLB_FRAMES, GlbSequenceWriter, write_obj, write_ply
from ..results import ARKIT_NAMES, Landmarks, Reconstruction
from .common import FileStats, ProgressCallback
from .expression import Extras, Identity, Prepared, posed_columns, prepared, readings, sibling, stream_rows, table_of
from .landmarks import LandmarkOptions

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


def identities_cm(known: dict[int, Identity]) -> dict[int, np.ndarray]:
    """Each track's identity face, cm (the unit of the vertices)."""
    return {face_id: identity.face_mm / MM_PER_CM for face_id, identity in known.items()}


class _Run(Extras):
    """One job's second read: reconstruction rows, and the files beside the table (meshes,
    Live Link CSVs, textures), each track's writers closed once its last frame has passed."""

    def __init__(self, prep: Prepared, output: Path, options: ReconstructOptions):
        super().__init__()
        self.prep, self.output, self.options = prep, output, options
        self.gaze_deg = np.zeros((0, 2), np.float32)  # of the rows last made, for Live Link
        self._glb: dict[int, GlbSequenceWriter] = {}
        self._livelink: dict[int, LiveLinkWriter] = {}
        self._mesh_tmp: Path | None = None
        self._textures = mesh_render.TextureWriter(
            {k: v.frontal_frame for k, v in prep.known.items()}, identities_cm(self.prep.known),
            lambda face_id, suffix: sibling(output, f".face{face_id}{suffix}"), self.claim) if options.texture else None
        longest = max(v.frames_seen for v in prep.known.values())
        if options.meshes == "glb" and longest > MAX_GLB_FRAMES:
            raise UsageError(f"a face is seen in {longest} frames, over the {MAX_GLB_FRAMES} one glTF holds; "
                             "use --meshes obj or ply", prep.source)

    def rows(self, frame: media.Frame | None, batch: Landmarks) -> Reconstruction:
        faces, per_track = readings(batch, self.prep.camera, self.prep.known)
        weights = np.zeros((len(batch), len(ARKIT_NAMES)), np.float32)
        self.gaze_deg = np.zeros((len(batch), 2), np.float32)
        for rows, reading in per_track:
            weights[rows], self.gaze_deg[rows] = reading.weights, reading.gaze_deg
        return Reconstruction(**posed_columns(batch), blendshapes=weights, vertices_cm=faces / MM_PER_CM)

    def add(self, frame: media.Frame | None, batch: Landmarks, rows: Reconstruction) -> None:
        if self._textures and frame is not None:
            self._textures.offer(frame, batch)
        for face_id in np.unique(rows.face_id):
            mask = rows.face_id == face_id
            self._add_track(int(face_id), rows[mask], self.gaze_deg[mask])
        if len(rows):
            self._finish_tracks(int(rows.frame_index.max()))

    def _add_track(self, face_id: int, rows: Reconstruction, gaze_deg: np.ndarray) -> None:
        if self.options.livelink:
            if face_id not in self._livelink:
                path = self.claim(sibling(self.output, f".face{face_id}.livelink.csv"))
                self._livelink[face_id] = LiveLinkWriter(path, self.prep.info.fps or 25.0).__enter__()
            self._livelink[face_id].write(rows.timestamp_s, rows.blendshapes, rows.head_pose_deg, gaze_deg)
        if self.options.meshes == "glb":
            self._add_glb(face_id, rows)
        elif self.options.meshes:
            self._add_mesh_files(face_id, rows)

    def _add_glb(self, face_id: int, rows: Reconstruction) -> None:
        if face_id not in self._glb:
            self._glb[face_id] = GlbSequenceWriter(self.claim(sibling(self.output, f".face{face_id}.glb")),
                                                   identities_cm(self.prep.known)[face_id], mean_face().triangles)
        for vertices, time_s in zip(rows.vertices_cm, rows.timestamp_s):
            try:
                self._glb[face_id].add(vertices, float(time_s))
            except ValueError as exc:  # frame times that do not increase: a broken file
                raise InputError(f"cannot animate face {face_id} in glTF ({exc}); use --meshes obj",
                                 self.prep.source) from exc

    def _add_mesh_files(self, face_id: int, rows: Reconstruction) -> None:
        if self._mesh_tmp is None:
            try:
                self._mesh_tmp = Path(tempfile.mkdtemp(prefix=f".{self.meshes_folder().name}.", dir=self.output.parent))
            except OSError as exc:
                raise OutputError(f"cannot write meshes here ({exc.strerror}); choose another -o",
                                  self.output.parent) from exc
            self._mesh_tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would outlive the rename
        write = write_obj if self.options.meshes == "obj" else write_ply
        for vertices, frame in zip(rows.vertices_cm, rows.frame_index):
            write(self._mesh_tmp / f"face{face_id}_frame{frame + 1:06d}.{self.options.meshes}", vertices,
                  mean_face().triangles)

    def meshes_folder(self) -> Path:
        return sibling(self.output, ".meshes")

    def _finish_tracks(self, frame_index: int) -> None:
        """Close the writers of tracks whose last frame has passed: open files stay few."""
        for face_id in [f for f in self._livelink if self.prep.known[f].last_frame <= frame_index]:
            self._livelink.pop(face_id).__exit__(None, None, None)
        for face_id in [f for f in self._glb if self.prep.known[f].last_frame <= frame_index]:
            self._glb.pop(face_id).close()

    def close(self) -> dict[str, Any]:
        self._finish_tracks(max(v.last_frame for v in self.prep.known.values()))
        if self._mesh_tmp is not None:
            target = self.claim(self.meshes_folder())
            shutil.rmtree(target, ignore_errors=True)
            self._mesh_tmp.rename(target)
            self._mesh_tmp = None
        return {}

    def abort(self) -> None:
        for writer in self._livelink.values():
            writer.__exit__(RuntimeError, RuntimeError("aborted"), None)
        for glb in self._glb.values():
            glb.discard()
        if self._mesh_tmp is not None:
            shutil.rmtree(self._mesh_tmp, ignore_errors=True)
        super().abort()


def reconstruct_file(source: Path, output: Path, options: ReconstructOptions, preview: Path | None = None,
                     progress: ProgressCallback | None = None) -> FileStats:
    """The batch worker: media, a faces file or a landmarks file -> ``output`` and its extras."""
    with prepared(source, output, options.landmarks, progress) as prep:
        header = prep.header("reconstruct", asdict(options))
        header["identities_cm"] = {str(k): np.round(v, 4).tolist() for k, v in identities_cm(prep.known).items()}
        header["unmeasured_blendshapes"] = list(UNMEASURED)
        run = _Run(prep, output, options)
        draw = mesh_render.PreviewDrawing(prep.camera).draw if preview else None
        return stream_rows(prep, output, "reconstruct", header, run.rows, run, want_frames=options.texture,
                           preview=preview, draw=draw)


def reconstruct(path: str | Path, **options: Any) -> Reconstruction:
    """Reconstruct every face of an image, a video, a faces file or a landmarks file.

    Keyword options are :class:`ReconstructOptions` fields and landmark options (``focal_px``,
    ``smooth``, ``min_score``, ...). Returns the table; the files beside it need
    :func:`reconstruct_file`.
    """
    return table_of(reconstruct_file, path, "reconstruct", ReconstructOptions, options,
                    files=("meshes", "texture", "livelink"))
