"""``stabilize`` (video mode) on real media: aligned crops hold the face still; the inverse
transforms lead back to the source frame; ``all_faces`` gives each track its own crop."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pathlib import Path

import facecli
from facecli import formats, media
from facecli.errors import NoFaceFound, UsageError
from facecli.portrait import load_portrait
from facecli.stages import stabilize as stabilize_stage
from facecli.stages.detect import DetectOptions, detect_file
from facecli.stages.stabilize import (StabilizeOptions, stabilize, stabilized_path, template_points, track_path,
                                      tracks_path)
from tests.conftest import ASTRONAUT, MEGAMIND, frames_on_screen, shown_frames


@pytest.fixture(scope="module")
def megamind(tmp_path_factory) -> tuple[facecli.results.Stabilization, facecli.Landmarks, Path]:
    out = tmp_path_factory.mktemp("stab") / "Megamind.stabilize.parquet"
    table = stabilize(MEGAMIND, out)
    return table, facecli.landmarks(stabilized_path(out)), stabilized_path(out)


def test_outputs(megamind):
    table, marks, _ = megamind
    assert len(table) == 270 and np.unique(marks.frame_index).size >= 265
    assert (table.status == 0).sum() >= 260  # the face is measured in every frame but the black first one
    identity = np.einsum("nij,njk->nik", np.concatenate([table.inverse_2x3, np.tile([[[0, 0, 1]]], (270, 1, 1))], 1),
                         np.concatenate([table.transform_2x3, np.tile([[[0, 0, 1]]], (270, 1, 1))], 1))
    assert np.allclose(identity, np.eye(3), atol=1e-9)


def test_crops_hold_the_eyes_still_within_each_shot(megamind):
    table, marks, _ = megamind
    corners = marks.landmarks_478[:, [33, 133, 362, 263], :2]
    for shot in np.unique(table.shot):
        frames = np.flatnonzero((table.shot == shot) & (table.status == 0))
        rows = np.isin(marks.frame_index, frames)
        if frames.size < 10:
            continue
        ids, counts = np.unique(marks.face_id[rows], return_counts=True)
        rows &= marks.face_id == ids[np.argmax(counts)]
        assert corners[rows].std(axis=0).max() <= 0.02 * 512, f"shot {shot}"


def test_inverse_maps_crops_back_onto_the_frame(megamind):
    """Each crop pasted back with its stored inverse lands on the source frame: aligning the
    pasted face with the frame's own pixels moves it by under 1 px."""
    table, marks, video = megamind
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
    checked = 0
    for source, crop in zip(media.iter_frames(MEGAMIND), media.iter_frames(video)):
        i = source.index
        if i % 10 or table.status[i] != 0:
            continue
        h, w = source.image.shape[:2]
        back = cv2.warpAffine(crop.image, table.inverse_2x3[i], (w, h))
        inside = cv2.warpAffine(np.full(crop.image.shape[:2], 255, np.uint8), table.inverse_2x3[i], (w, h))
        inside = cv2.erode(inside, np.ones((9, 9), np.uint8))
        grey = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32) for x in (source.image, back)]
        _, shift = cv2.findTransformECC(grey[0], grey[1], np.eye(2, 3, dtype=np.float32), cv2.MOTION_TRANSLATION,
                                        criteria, inside, 5)
        assert np.hypot(*shift[:, 2]) < 1.0, f"frame {i}"
        checked += 1
    assert checked >= 20


def face_motion_px(video: Path, points: np.ndarray) -> np.ndarray:
    """(N, K, 2) where ``points`` of the first frame are in each frame, by aligning the pixels
    around them (ECC, affine): sub-pixel, where landmarks jitter by a pixel or two."""
    frames = [cv2.cvtColor(f.image, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in media.iter_frames(video)]
    mask = np.zeros(frames[0].shape, np.uint8)
    (x0, y0), (x1, y1) = points.min(axis=0).astype(int) - 20, points.max(axis=0).astype(int) + 20
    mask[y0:y1, x0:x1] = 1
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
    out = []
    for frame in frames:
        _, warp = cv2.findTransformECC(frames[0], frame, np.eye(2, 3, dtype=np.float32), cv2.MOTION_AFFINE,
                                       criteria, mask, 5)
        out.append(points @ warp[:, :2].T + warp[:, 2])
    return np.array(out)


def test_a_moving_portrait_is_held_still(tmp_path):
    """The astronaut (cropped to a 200 px face) moved along a smooth random similarity path
    (roll +-15 deg, scale +-20%, shifts of 40 px) for 4 s: in the 512 px crop the stable points
    move by a standard deviation of at most a pixel (0.88 px measured: MediaPipe's own jitter on the
    moving face, 0.5-0.8 px per point, is what remains)."""
    image = load_portrait(ASTRONAUT, crop=True).image
    rng = np.random.default_rng(3)
    t = np.arange(100) * 2 * np.pi / 100
    angle = 15 * np.sin(t + rng.uniform(0, 6))
    scale = 1 + 0.2 * np.sin(0.8 * t + rng.uniform(0, 6))
    shift = np.stack([40 * np.sin(1.2 * t + rng.uniform(0, 6)), 30 * np.sin(0.9 * t + rng.uniform(0, 6))], axis=1)
    video = tmp_path / "moving.mp4"
    with media.VideoWriter(video, 512, 512, 25.0, crf=12) as writer:
        for a, s, (dx, dy) in zip(angle, scale, shift):
            m = cv2.getRotationMatrix2D((256, 256), a, s)
            m[:, 2] += [dx, dy]
            writer.write(cv2.warpAffine(image, m, (512, 512), borderMode=cv2.BORDER_REFLECT))
    stabilize(video, tmp_path / "moving.stabilize.parquet")
    out = stabilized_path(tmp_path / "moving.stabilize.parquet")
    moved = face_motion_px(out, template_points(StabilizeOptions()))
    assert moved.std(axis=0).max() <= 1.0


def _due_and_shown(clip: Path, table: facecli.results.Stabilization, video: Path) -> tuple[np.ndarray, np.ndarray]:
    """For each frame of a stabilized ``video`` (128 px), the table row it is due to show (the
    source frame on screen at its time) and the one it shows, told by the clip's marks."""
    source = list(media.iter_frames(clip))
    crops = [source[i].crop_rgb(m, (128, 128), cv2.BORDER_REFLECT)
             for i, m in zip(table.frame_index, table.transform_2x3)]
    frames = list(media.iter_frames(video))
    due = frames_on_screen(table.timestamp_s, np.array([f.timestamp_s for f in frames]), media.probe(video).fps)
    return due, shown_frames([f.image for f in frames], crops, due)


def test_variable_frame_rate_keeps_the_picture_on_time(vfr_clip, tmp_path):
    """QA's clip (every frame of the first second, then every 6th): output frame n shows the
    source frame on screen at n / fps, so the picture stays with the audio (it trailed it by up
    to 0.9 s when frames were written one after another at the average rate). The table keeps a
    row per source frame, at its time."""
    out = tmp_path / "vfr.stabilize.parquet"
    table = stabilize(vfr_clip, out, size=128)
    source_s = np.array(list(media.frame_times(vfr_clip)))
    assert (table.frame_index == np.arange(31)).all() and table.timestamp_s == pytest.approx(source_s)
    info = media.probe(stabilized_path(out))
    assert info.fps == pytest.approx(24000 / 1001)  # the clip's base rate, not its average (11.09)
    due, shown = _due_and_shown(vfr_clip, table, stabilized_path(out))
    assert len(due) == round((source_s[-1] - source_s[0]) * info.fps) + 1 == 67 and due[-1] == 30
    assert (shown == due).all()
    assert info.duration_s == pytest.approx(67 / info.fps, abs=0.03)  # the audio is cut to the video


def test_constant_frame_rate_gives_one_output_frame_per_source_frame(cfr_clip, tmp_path):
    """The same clip at its constant rate: output frame n shows source frame n."""
    out = tmp_path / "cfr.stabilize.parquet"
    due, shown = _due_and_shown(cfr_clip, stabilize(cfr_clip, out, size=128), stabilized_path(out))
    assert (due == np.arange(71)).all() and (shown == due).all()


def test_no_face_fails_without_outputs(bad_media, tmp_path):
    out = tmp_path / "mute.stabilize.parquet"
    with pytest.raises(NoFaceFound, match="no face"):
        stabilize(bad_media["mute"], out)
    assert not out.exists() and not stabilized_path(out).exists()



def test_a_face_id_not_in_the_media_names_the_ids(tmp_path):
    out = tmp_path / "astronaut.stabilize.parquet"
    with pytest.raises(UsageError, match=r"no face with id 9 in the image; it has ids 0$"):
        stabilize(ASTRONAUT, out, face_id=9)
    assert not out.exists() and not stabilized_path(out).exists()


# --------------------------------------------------------------------------- all_faces: one output per track


@pytest.fixture(scope="module")
def megamind_tracks(tmp_path_factory) -> tuple[dict, dict, Path]:
    """``all_faces`` on Megamind: each track's table and video, and the index."""
    out = tmp_path_factory.mktemp("tracks") / "Megamind.stabilize.parquet"
    tables = stabilize(MEGAMIND, out, all_faces=True)
    videos = {face: stabilized_path(track_path(tracks_path(out), face)) for face in tables}
    return tables, videos, tracks_path(out)


@pytest.mark.slow
def test_all_faces_writes_one_pair_per_track(megamind_tracks, megamind_landmarks):
    """Each track's video and table cover its own first to last frame, frame for row."""
    tables, videos, index = megamind_tracks
    assert len(tables) >= 2  # the two characters of the first shot, then one per later shot
    for face, table in tables.items():
        frames = megamind_landmarks.frame_index[megamind_landmarks.face_id == face]
        assert media.probe(videos[face]).frame_count == len(table) == frames.max() - frames.min() + 1
        assert (table.frame_index == np.arange(frames.min(), frames.max() + 1)).all()
        assert (table.face_id == face).all() and (table.status == 0).sum() == frames.size
    combined = formats.read_table(index)
    assert len(combined) == sum(map(len, tables.values()))
    assert [t["face_id"] for t in combined.header["tracks"]] == list(tables)
    single = index.with_name("Megamind.stabilize.parquet")
    assert not single.exists() and not stabilized_path(single).exists()


@pytest.mark.slow
def test_all_faces_crops_hold_each_face_on_the_template(megamind_tracks):
    """Re-detected in each track's crop, the eye corners sit near the template's and vary by
    at most 2% of the crop (each track lies within one shot). Measured: medians 5-18 px (the
    characters' eyes are not the mean face's), standard deviations 2-7 px."""
    tables, videos, _ = megamind_tracks
    corners_template = template_points(StabilizeOptions())[:4]  # STABLE_POINTS begins with the eye corners
    for face, video in videos.items():
        marks = facecli.landmarks(video)
        ids, counts = np.unique(marks.face_id, return_counts=True)
        main = marks.face_id == ids[np.argmax(counts)]
        assert main.sum() >= 0.9 * len(tables[face]), f"face {face}"
        corners = marks.landmarks_478[main][:, [33, 133, 362, 263], :2]
        assert np.median(np.linalg.norm(corners - corners_template, axis=2)) <= 0.04 * 512, f"face {face}"
        assert corners.std(axis=0).max() <= 0.02 * 512, f"face {face}"


@pytest.mark.slow
def test_all_faces_follow_different_faces(megamind_tracks, megamind_landmarks):
    """Each crop's centre, mapped back by its inverse, lies in its own face's box in the source
    frame: tracks that share frames show different faces."""
    tables, _, _ = megamind_tracks
    centres = {}
    for face, table in tables.items():
        centre = table.inverse_2x3[:, :, :2] @ np.array([256.0, 256.0]) + table.inverse_2x3[:, :, 2]
        centres[face] = dict(zip(table.frame_index.tolist(), centre))
        rows = np.flatnonzero(megamind_landmarks.face_id == face)
        boxes = dict(zip(megamind_landmarks.frame_index[rows].tolist(), megamind_landmarks.box_xywh[rows]))
        inside = [(x0 <= x <= x0 + w) and (y0 <= y <= y0 + h)
                  for (x, y), (x0, y0, w, h) in ((centres[face][f], box) for f, box in boxes.items())]
        assert np.mean(inside) >= 0.95, f"face {face}"
    shared = [(a, b) for a in centres for b in centres if a < b and centres[a].keys() & centres[b].keys()]
    assert shared  # the first shot's two characters
    for a, b in shared:
        gaps = [np.linalg.norm(centres[a][f] - centres[b][f]) for f in centres[a].keys() & centres[b].keys()]
        assert min(gaps) > 100, (a, b)


def test_all_faces_failure_removes_every_output(tmp_path, monkeypatch, megamind_landmarks):
    """From a landmarks file: when the second track fails, the first track's pair goes too and
    no index is written."""
    marks = tmp_path / "Megamind.landmarks.parquet"
    with formats.TableWriter(marks, "landmarks", dict(megamind_landmarks.header)) as writer:
        writer.write(megamind_landmarks)
        writer.close()
    real, calls = stabilize_stage._stabilize_pass, []

    def second_fails(*args):
        calls.append(args)
        if len(calls) == 2:
            assert stabilized_path(calls[0][1]).exists() and calls[0][1].exists()  # the first track was in place
            raise RuntimeError("disk full")
        return real(*args)

    monkeypatch.setattr(stabilize_stage, "_stabilize_pass", second_fails)
    with pytest.raises(RuntimeError, match="disk full"):
        stabilize(marks, tmp_path / "Megamind.stabilize.parquet", all_faces=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [marks.name]


def test_all_faces_tracks_keep_the_picture_on_time(vfr_clip, tmp_path):
    """A track's video, from its first frame (the clip's second) to its last, places frames by
    their times as a whole-video run does: 66 frames where the track has 30."""
    index = tracks_path(tmp_path / "vfr.stabilize.parquet")
    (face, table), = stabilize(vfr_clip, tmp_path / "vfr.stabilize.parquet", all_faces=True, size=128).items()
    video = stabilized_path(track_path(index, face))
    due, shown = _due_and_shown(vfr_clip, table, video)
    assert table.frame_index[0] == 1 and len(table) == 30 and len(due) == 66 and due[-1] == 29
    assert (shown == due).all()
    assert media.probe(video).duration_s == pytest.approx(66 / media.probe(video).fps, abs=0.03)


def test_all_faces_and_face_id_together_are_refused(tmp_path):
    with pytest.raises(UsageError, match="--all-faces or --face-id"):
        stabilize(MEGAMIND, tmp_path / "Megamind.stabilize.parquet", all_faces=True, face_id=1)


@pytest.mark.parametrize("given", ["video", "faces file"])
def test_following_the_main_face_fits_no_other(tmp_path, mesh_fits, megamind_landmarks, given):
    """Without --face-id only the followed face is fitted: on the example, whose background face
    the landmarks stage also fits (1.34 faces a frame), about one fit a frame. The face followed
    is the main one: the crop's centre maps back into the frame's largest face."""
    source = MEGAMIND
    if given == "faces file":
        source = tmp_path / "Megamind.faces.parquet"
        detect_file(MEGAMIND, source, DetectOptions())
    mesh_fits.clear()  # only stabilize counts, not the fixtures or the detect run before it
    table = stabilize(source, tmp_path / "Megamind.stabilize.parquet")
    assert len(megamind_landmarks) > 1.3 * 270
    assert len(mesh_fits) <= 275 and (table.status == 0).sum() >= 260
    centre = template_points(StabilizeOptions()).mean(axis=0)
    inside = []
    for f in np.flatnonzero(table.status == 0):
        rows = megamind_landmarks.frame_index == f
        if rows.any():
            x, y, w, h = megamind_landmarks.box_xywh[rows][np.argmax(megamind_landmarks.box_xywh[rows, 2])]
            cx, cy = table.inverse_2x3[f] @ [*centre, 1.0]
            inside.append(x <= cx <= x + w and y <= cy <= y + h)
    assert np.mean(inside) >= 0.95
