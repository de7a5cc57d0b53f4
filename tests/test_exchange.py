from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from facecli import exchange
from facecli.errors import UsageError
from facecli.exchange import LIVE_LINK_COLUMNS, MouthCue, mouth_cues, write_live_link_csv, write_mouth_cues
from facecli.results import FACE_CONTROLS, Motion
from facecli.speech import Phone

DATA = Path(__file__).parent / "data"
TIMECODE = re.compile(r"^\d{2}:\d{2}:\d{2}:\d{2}\.\d{3}$")
FPS = 30.0


def _motion(n: int = 12, gaze_deg: tuple[float, float] = (0.0, 0.0), seed: int = 0) -> Motion:
    rng = np.random.default_rng(seed)
    return Motion(
        frame_index=np.arange(n), timestamp_s=np.arange(n) / FPS, face_id=np.zeros(n), shot=np.zeros(n),
        face_controls=rng.random((n, len(FACE_CONTROLS))), head_pose_deg=rng.uniform(-20, 20, (n, 3)),
        gaze_deg=np.tile(gaze_deg, (n, 1)), phone=np.array(["SIL"] * n),
    )


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], row)) for row in rows[1:]]


def _phones(*spans: tuple[str, float]) -> list[Phone]:
    """Phones from (label, duration_s) spans laid end to end from 0."""
    phones, t = [], 0.0
    for label, duration in spans:
        phones.append(Phone(label, round(t, 6), round(t + duration, 6)))
        t += duration
    return phones


# ---------------------------------------------------------------- Live Link Face CSV

def test_columns_match_the_apps_header() -> None:
    header = (DATA / "live_link_face_header.csv").read_text().strip().split(",")
    assert LIVE_LINK_COLUMNS == tuple(header) and len(LIVE_LINK_COLUMNS) == 63
    assert LIVE_LINK_COLUMNS[1] == "BlendshapeCount"


def test_mapping_tables_name_real_columns_and_controls() -> None:
    names = set(exchange.COPIED_CONTROLS) | set(exchange.DERIVED_BLENDSHAPES)
    assert names <= set(exchange.BLENDSHAPES)
    assert set(exchange.COPIED_CONTROLS.values()) <= set(FACE_CONTROLS)


def test_live_link_csv_round_trip(tmp_path: Path) -> None:
    motion = _motion(n=45)  # 1.5 s: timecode seconds roll over
    path = tmp_path / "take.csv"
    write_live_link_csv(motion, path, FPS)
    header, rows = _read_csv(path)
    assert tuple(header) == LIVE_LINK_COLUMNS and len(rows) == 45
    assert all(len(row) == 63 and row["BlendshapeCount"] == "61" for row in rows)
    jaw = np.array([float(row["JawOpen"]) for row in rows])
    np.testing.assert_allclose(jaw, motion.control("jaw_open"), atol=5e-5)
    close = np.array([float(row["MouthClose"]) for row in rows])
    np.testing.assert_allclose(close, motion.control("lip_close") * motion.control("jaw_open"), atol=5e-5)
    codes = [row["Timecode"] for row in rows]
    assert all(TIMECODE.match(code) for code in codes)
    assert codes[:2] == ["00:00:00:00.000", "00:00:00:01.000"] and codes[30] == "00:00:01:00.000"
    assert codes == sorted(codes) and len(set(codes)) == len(codes)
    weights = np.array([[float(row[name]) for name in exchange.BLENDSHAPES] for row in rows])
    assert weights.min() >= 0 and weights.max() <= 1
    assert not list(tmp_path.glob(".*"))  # the atomic write left no temporary file


def test_head_rotation_is_degrees_over_180(tmp_path: Path) -> None:
    motion = _motion(n=3)
    write_live_link_csv(motion, tmp_path / "take.csv", FPS)
    _, rows = _read_csv(tmp_path / "take.csv")
    head = np.array([[float(row[c]) for c in ("HeadYaw", "HeadPitch", "HeadRoll")] for row in rows])
    np.testing.assert_allclose(head * 180, motion.head_pose_deg, atol=1e-3)


def test_gaze_to_the_subjects_right(tmp_path: Path) -> None:
    write_live_link_csv(_motion(n=2, gaze_deg=(15.0, 0.0)), tmp_path / "take.csv", FPS)
    _, rows = _read_csv(tmp_path / "take.csv")
    looks = {name: float(rows[0][name]) for name in LIVE_LINK_COLUMNS if name.startswith("EyeLook")}
    assert looks.pop("EyeLookOutRight") == pytest.approx(0.5) and looks.pop("EyeLookInLeft") == pytest.approx(0.5)
    assert set(looks.values()) == {0.0}
    assert float(rows[0]["LeftEyeYaw"]) == float(rows[0]["RightEyeYaw"]) == pytest.approx(15 / 180, abs=1e-6)


def test_gaze_up_is_negative_eye_pitch(tmp_path: Path) -> None:
    write_live_link_csv(_motion(n=1, gaze_deg=(0.0, 45.0)), tmp_path / "take.csv", FPS)
    _, rows = _read_csv(tmp_path / "take.csv")
    assert float(rows[0]["EyeLookUpLeft"]) == float(rows[0]["EyeLookUpRight"]) == 1.0  # clipped at 30 deg
    assert float(rows[0]["EyeLookDownLeft"]) == 0.0
    assert float(rows[0]["LeftEyePitch"]) == pytest.approx(-45 / 180, abs=1e-6)


def test_timecode_subframe_and_hours() -> None:
    assert exchange.live_link_timecode(3661 + 59 / 60, 60) == "01:01:01:59.000"
    assert exchange.live_link_timecode(0.5 / 30, 30) == "00:00:00:00.500"  # thousandths of a frame


def test_bad_frame_rate_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        write_live_link_csv(_motion(n=2), tmp_path / "take.csv", 0.0)
    assert not (tmp_path / "take.csv").exists()


# ---------------------------------------------------------------- Rhubarb mouth cues

SPEECH = _phones(("SIL", 0.3), ("HH", 0.1), ("AH", 0.15), ("B", 0.08), ("AA", 0.2), ("M", 0.1), ("SIL", 0.27))
SPEECH_S = 1.2


def _tiles(cues: list[MouthCue], duration_s: float) -> bool:
    starts_ok = cues[0].start_s == 0 and cues[-1].end_s == pytest.approx(duration_s)
    return starts_ok and all(a.end_s == b.start_s for a, b in zip(cues, cues[1:]))


def test_mouth_cues_shapes() -> None:
    cues = mouth_cues(SPEECH, SPEECH_S)
    assert [c.shape for c in cues] == ["X", "B", "C", "A", "D", "A", "X"]
    assert _tiles(cues, SPEECH_S)
    assert [(c.start_s, c.end_s) for c in cues[:2]] == [(0.0, 0.3), (0.3, 0.4)]


def test_mouth_cues_merge_equal_shapes() -> None:
    cues = mouth_cues(_phones(("P", 0.1), ("B", 0.1), ("M", 0.1), ("F", 0.1), ("V", 0.1)), 0.5)
    assert [(c.start_s, c.end_s, c.shape) for c in cues] == [(0.0, 0.3, "A"), (0.3, 0.5, "G")]


def test_mouth_cues_cover_missing_tail_with_rest() -> None:
    cues = mouth_cues(_phones(("AA", 0.4)), 1.0)
    assert [(c.start_s, c.end_s, c.shape) for c in cues] == [(0.0, 0.4, "D"), (0.4, 1.0, "X")]


def test_short_cues_disappear_and_short_closures_stay() -> None:
    # 0.03 s of L between vowels is dropped; a 0.03 s M borrows time up to 0.07 s.
    cues = mouth_cues(_phones(("AA", 0.3), ("L", 0.03), ("AO", 0.3), ("M", 0.03), ("AA", 0.3)), 0.96)
    assert [c.shape for c in cues] == ["D", "E", "A", "D"]
    assert all(c.end_s - c.start_s >= 0.07 - 1e-9 for c in cues) and _tiles(cues, 0.96)


def test_short_pause_holds_previous_shape() -> None:
    cues = mouth_cues(_phones(("AA", 0.3), ("SIL", 0.1), ("UW", 0.3)), 0.7)
    assert [c.shape for c in cues] == ["D", "F"] and cues[0].end_s == 0.4
    long_pause = mouth_cues(_phones(("AA", 0.3), ("SIL", 0.2), ("UW", 0.3)), 0.8)
    assert [c.shape for c in long_pause] == ["D", "X", "F"]


def test_basic_shapes_only() -> None:
    phones = _phones(("SIL", 0.2), ("F", 0.1), ("AA", 0.2), ("L", 0.2), ("IY", 0.2), ("SIL", 0.2))
    assert [c.shape for c in mouth_cues(phones, 1.1)] == ["X", "G", "D", "H", "B", "X"]
    basic = mouth_cues(phones, 1.1, extended=False)
    assert [c.shape for c in basic] == ["A", "D", "C", "B", "A"]  # Rhubarb: G->A, H->C, X->A
    assert not {"G", "H", "X"} & {c.shape for c in basic} and _tiles(basic, 1.1)


def test_every_cmu_phone_has_a_shape() -> None:
    cmu = ("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z "
           "ZH").split()
    assert len(cmu) == 39 and set(cmu) | {"SIL"} == set(exchange.SHAPE_OF_PHONE)
    assert set(exchange.SHAPE_OF_PHONE.values()) == set("ABCDEFGHX")


def test_write_tsv_and_json(tmp_path: Path) -> None:
    cues = mouth_cues(SPEECH, SPEECH_S)
    write_mouth_cues(cues, tmp_path / "speech.tsv", "speech.wav", SPEECH_S)
    lines = [line.split("\t") for line in (tmp_path / "speech.tsv").read_text().splitlines()]
    assert lines == [[f"{c.start_s:.2f}", c.shape] for c in cues] + [["1.20", "X"]]

    write_mouth_cues(cues, tmp_path / "speech.json", "speech.wav", SPEECH_S)
    data = json.loads((tmp_path / "speech.json").read_text())
    assert data["metadata"] == {"soundFile": "speech.wav", "duration": 1.2}
    assert [(c["start"], c["end"], c["value"]) for c in data["mouthCues"]] == [
        (round(c.start_s, 2), round(c.end_s, 2), c.shape) for c in cues
    ]
    assert '"start": 0.00, "end": 0.30, "value": "X"' in (tmp_path / "speech.json").read_text()


def test_basic_tsv_ends_with_closed_mouth(tmp_path: Path) -> None:
    cues = mouth_cues(SPEECH, SPEECH_S, extended=False)
    write_mouth_cues(cues, tmp_path / "speech.tsv", "speech.wav", SPEECH_S, extended=False)
    assert (tmp_path / "speech.tsv").read_text().splitlines()[-1] == "1.20\tA"


def test_bad_suffix_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "speech.xml"
    with pytest.raises(UsageError, match=r"speech\.xml.*\.json or \.tsv") as info:
        write_mouth_cues(mouth_cues(SPEECH, SPEECH_S), path, "speech.wav", SPEECH_S)
    assert "\n" not in str(info.value) and not path.exists()
