from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import facecli
from facecli.facemodel import IBUG68_FROM_MESH
from facecli import media
from facecli.media import read_image
from facecli.stages.landmarks import LandmarkOptions, iter_landmarks, landmarks_file
from facecli.stages.detect import DetectOptions, detect_file

from ..conftest import ASTRONAUT, MEGAMIND, MEGAMIND_CUTS, frames_on_screen, shown_frames

OUTER_EYE_CORNERS = (33, 263)  # mesh indices; their distance is the 300-W inter-ocular normaliser


def inter_ocular(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[OUTER_EYE_CORNERS[0], :2] - points[OUTER_EYE_CORNERS[1], :2]))


@pytest.fixture(scope="module")
def astronaut() -> facecli.Landmarks:
    return facecli.landmarks(ASTRONAUT)


def test_astronaut_landmarks_lie_inside_the_detected_face(astronaut, astronaut_faces) -> None:
    assert len(astronaut) == 1
    x, y, w, h = astronaut_faces.box_xywh[0]
    pts68 = astronaut.landmarks_68[0]
    # The detector's box runs from the brows to the chin; the jaw line may reach a little past it.
    assert (pts68[:, 0] > x - 0.2 * w).all() and (pts68[:, 0] < x + 1.2 * w).all()
    assert (pts68[:, 1] > y - 0.2 * h).all() and (pts68[:, 1] < y + 1.3 * h).all()
    nose_tip, chin = pts68[30], pts68[8]
    assert abs(nose_tip[0] - (x + w / 2)) < 0.15 * w
    assert chin[1] > nose_tip[1]
    assert astronaut.confidence[0] > 0.6


def test_astronaut_pose_is_near_frontal(astronaut) -> None:
    yaw, pitch, roll = astronaut.head_pose_deg[0]
    assert abs(yaw) < 10 and abs(roll) < 10
    # She looks into a camera whose axis passes ~130 px (14 degrees) below her face, so in
    # camera coordinates her head pitches towards it by about that much.
    assert 5 < pitch < 25
    assert 300 < astronaut.translation_mm[0, 2] < 1500, "a portrait is taken from about a metre"


def test_mirror_image_mirrors_yaw_and_roll(astronaut, tmp_path: Path) -> None:
    mirrored = tmp_path / "mirrored.png"
    Image.fromarray(read_image(ASTRONAUT)[:, ::-1]).save(mirrored)
    yaw, pitch, roll = astronaut.head_pose_deg[0]
    m_yaw, m_pitch, m_roll = facecli.landmarks(mirrored).head_pose_deg[0]
    assert m_yaw == pytest.approx(-yaw, abs=3) and m_roll == pytest.approx(-roll, abs=3)
    assert m_pitch == pytest.approx(pitch, abs=3)


@pytest.mark.parametrize("angle_deg, scale", [(15, 1.0), (-20, 0.8), (30, 1.2), (10, 0.6)])
def test_landmarks_are_equivariant_to_rotation_and_scale(astronaut, tmp_path, angle_deg, scale) -> None:
    warp = cv2.getRotationMatrix2D((256, 256), angle_deg, scale)
    moved = tmp_path / "moved.png"
    Image.fromarray(cv2.warpAffine(read_image(ASTRONAUT), warp, (512, 512), borderMode=cv2.BORDER_REFLECT)).save(moved)
    back = cv2.invertAffineTransform(warp)
    found = facecli.landmarks(moved).landmarks_478[0, :, :2]
    mapped_back = found @ back[:, :2].T + back[:, 2]
    original = astronaut.landmarks_478[0]
    error = np.linalg.norm(mapped_back - original[:, :2], axis=1)[IBUG68_FROM_MESH].mean()
    assert error < 0.02 * inter_ocular(original), f"mean error {error:.2f} px"


def test_megamind_landmarks_on_every_frame_with_a_face(megamind_landmarks) -> None:
    frames_with_landmarks = set(megamind_landmarks.frame_index.tolist())
    frames_showing_a_face = set(range(1, 270))  # all but the black first frame
    share = len(frames_with_landmarks & frames_showing_a_face) / len(frames_showing_a_face)
    assert share >= 0.95, f"landmarks on {share:.1%} of the frames that show a face"


def test_megamind_black_first_frame_gives_no_face(megamind_landmarks) -> None:
    assert 0 not in megamind_landmarks.frame_index


def test_megamind_characters_get_different_ids_and_keep_them(megamind_landmarks) -> None:
    marks = megamind_landmarks
    shot_starts = {int(marks.frame_index[marks.shot == s].min()) for s in np.unique(marks.shot)}
    assert shot_starts == set(MEGAMIND_CUTS), "shots start at the cuts"
    main_ids = []
    for shot in np.unique(marks.shot):
        rows = marks[marks.shot == shot]
        main = rows.face_id[np.argmax(rows.box_xywh[:, 2])]
        main_ids.append(main)
        frames = np.unique(rows.frame_index)
        assert np.isin(frames, rows.frame_index[rows.face_id == main]).mean() > 0.95, f"shot {shot} lost its face"
    assert len(set(main_ids)) == len(main_ids)
    first_shot = marks[marks.shot == marks.shot.min()]
    assert len(np.unique(first_shot.face_id)) >= 2, "the woman and the small background face are both tracked"


def test_megamind_yaw_follows_the_characters(megamind_landmarks) -> None:
    marks = megamind_landmarks
    # Shot 2 (98-153): the man seen over the woman's shoulder turns towards image left, shot 3 the
    # woman looks towards image right: opposite signs of yaw.
    yaw_man = np.median(marks.head_pose_deg[(marks.frame_index >= 98) & (marks.frame_index < 154), 0])
    yaw_woman = np.median(marks.head_pose_deg[(marks.frame_index >= 154) & (marks.frame_index < 200), 0])
    assert np.sign(yaw_man) != np.sign(yaw_woman)


def test_chaining_detect_then_landmarks_equals_landmarks_from_video(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    _cut(MEGAMIND, clip, start_s=3.5, seconds=3.5)  # frames 84-167: two cuts, three shots
    faces_file = tmp_path / "clip.faces.parquet"
    detect_file(clip, faces_file, DetectOptions())
    options = LandmarkOptions(detect_every=20)
    chained, direct = tmp_path / "chained.landmarks.parquet", tmp_path / "direct.landmarks.parquet"
    landmarks_file(faces_file, chained, options)
    landmarks_file(clip, direct, options)
    a, b = facecli.read_table(chained), facecli.read_table(direct)
    assert len(a) == len(b) > 60
    np.testing.assert_array_equal(a.frame_index, b.frame_index)
    np.testing.assert_array_equal(a.face_id, b.face_id)
    np.testing.assert_allclose(a.landmarks_478, b.landmarks_478, atol=1e-3)
    assert a.header["source"]["path"] == b.header["source"]["path"] == str(clip.resolve())


def _cut(source: Path, target: Path, start_s: float, seconds: float) -> None:
    import subprocess

    from facecli.media import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", str(start_s), "-i", str(source), "-t", str(seconds),
                    "-c:v", "libx264", "-crf", "12", "-an", str(target)], check=True)


def test_smoothing_reduces_jitter_without_lag(tmp_path: Path) -> None:
    clip = tmp_path / "still.mp4"
    _cut(MEGAMIND, clip, start_s=9.0, seconds=2.0)  # the man's close-up
    raw = facecli.landmarks(clip)
    smooth = facecli.landmarks(clip, smooth=True)
    assert len(raw) == len(smooth)
    jitter = lambda m: np.abs(np.diff(m.landmarks_478[:, :, :2], n=2, axis=0)).mean()  # noqa: E731
    assert jitter(smooth) < 0.7 * jitter(raw)
    drift = np.abs(smooth.landmarks_478[:, :, :2] - raw.landmarks_478[:, :, :2]).mean()
    assert drift < 0.03 * inter_ocular(raw.landmarks_478[0])


def test_max_faces_stops_fitting_at_the_limit(group_composite, mesh_fits):
    """Faces past ``max_faces`` are not fitted and then dropped: the limit saves their cost."""
    assert len(facecli.landmarks(group_composite[0], max_faces=2)) == 2
    assert len(mesh_fits) == 2
    mesh_fits.clear()
    assert len(facecli.landmarks(group_composite[0])) == 8 and len(mesh_fits) == 8


def test_iter_landmarks_without_head_pose_gives_the_same_mesh(astronaut) -> None:
    [(_, rows)] = list(iter_landmarks(ASTRONAUT, LandmarkOptions(), head_pose=False))
    np.testing.assert_allclose(rows.landmarks_478, astronaut.landmarks_478, atol=1e-3)
    assert np.isnan(rows.rotation_rad).all() and np.isnan(rows.confidence).all()
    assert np.isfinite(astronaut.rotation_rad).all()


@pytest.mark.parametrize("clip", ["vfr_clip", "cfr_clip"])
def test_preview_frames_show_the_source_frame_on_screen_then(clip, tmp_path: Path, request) -> None:
    """A variable frame rate (every frame of the first second, then every 6th) keeps real time in
    the preview: output frame n shows the source frame on screen at n / fps, so the drawing stays
    with the audio. A constant rate gives one preview frame per source frame."""
    clip = request.getfixturevalue(clip)
    preview = tmp_path / "preview.mp4"
    landmarks_file(clip, tmp_path / "clip.landmarks.parquet", LandmarkOptions(), preview=preview)
    source = list(media.iter_frames(clip))
    drawn = list(media.iter_frames(preview))
    due = frames_on_screen(np.array([f.timestamp_s for f in source]), np.array([f.timestamp_s for f in drawn]),
                           media.probe(preview).fps)
    assert due[-1] == len(source) - 1 and len(drawn) == (67 if "vfr" in clip.name else len(source))
    assert (shown_frames([f.image for f in drawn], [f.image for f in source], due) == due).all()
