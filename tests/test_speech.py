"""Speech analysis on real LibriVox clips (16 kHz mono, public domain) and synthetic audio."""

from __future__ import annotations

import threading
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from facecli import speech
from facecli.errors import InputError
from facecli.speech import SAMPLE_RATE_HZ, SpeechAnalysis, analyse_speech, load_audio, pitch_yin
from tests.conftest import CLIPS, concatenate_wavs, ffmpeg, write_wav

CLIP_0870, TEXT_0870 = CLIPS["0870"]
CLIP_0880, TEXT_0880 = CLIPS["0880"]


def wav_duration_s(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def assert_tiles(analysis: SpeechAnalysis) -> None:
    """Phones cover [0, duration] without gaps or overlaps."""
    phones = analysis.phones
    assert phones[0].start_s == 0.0
    assert phones[-1].end_s == pytest.approx(analysis.duration_s)
    for a, b in zip(phones, phones[1:]):
        assert a.end_s == b.start_s
    assert all(p.end_s > p.start_s for p in phones)


def pronunciations(word: str) -> list[list[str]]:
    """Every pronunciation of ``word`` in the dictionary pocketsphinx ships (word, word(2), ...)."""
    import pocketsphinx

    found = []
    with open(Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict", encoding="utf-8") as f:
        for line in f:
            head, *phones = line.split()
            if head == word or (head.startswith(word + "(") and head.endswith(")")):
                found.append(phones)
    return found


def dictionary_phones(words: str) -> list[str]:
    """The first pronunciation of each word, concatenated."""
    return [ph for w in words.split() for ph in pronunciations(w)[0]]


@pytest.fixture(scope="module")
def aligned_0880() -> SpeechAnalysis:
    return analyse_speech(CLIP_0880, transcript="He was not an ill-disposed young man.")


@pytest.fixture(scope="module")
def recognised_0880() -> SpeechAnalysis:
    return analyse_speech(CLIP_0880)


# --------------------------------------------------------------------------- load_audio


def test_load_wav_rate_and_duration():
    samples, rate = load_audio(CLIP_0880)
    assert rate == 16000
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) / rate == pytest.approx(wav_duration_s(CLIP_0880), abs=1e-3)
    assert -1.0 <= samples.min() and samples.max() < 1.0
    assert np.abs(samples).max() > 0.05  # real speech, not silence


@pytest.mark.parametrize("suffix, codec", [(".mp3", "libmp3lame"), (".m4a", "aac")])
def test_load_compressed(tmp_path, suffix, codec):
    out = tmp_path / f"clip{suffix}"
    ffmpeg("-i", str(CLIP_0880), "-c:a", codec, "-b:a", "64k", str(out))
    samples, rate = load_audio(out)
    assert rate == 16000
    # Encoder priming/padding adds at most a few tens of ms.
    assert len(samples) / rate == pytest.approx(wav_duration_s(CLIP_0880), abs=0.08)


def test_load_stereo_44k_comes_back_mono_16k(tmp_path):
    out = tmp_path / "stereo.wav"
    ffmpeg("-i", str(CLIP_0880), "-ac", "2", "-ar", "44100", str(out))
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 44100)
    samples, rate = load_audio(out)
    assert rate == 16000 and samples.ndim == 1
    assert len(samples) / rate == pytest.approx(wav_duration_s(CLIP_0880), abs=0.01)
    mono, _ = load_audio(CLIP_0880)
    n = min(len(mono), len(samples))
    assert np.corrcoef(mono[:n], samples[:n])[0, 1] > 0.95  # the same sound, not just the same length


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.wav"
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 50)
    for path in (missing, empty, text):
        with pytest.raises(InputError) as err:
            load_audio(path)
        assert str(path) in str(err.value)


def test_a_truncated_wav_is_an_input_error(tmp_path):
    cut = tmp_path / "cut.wav"
    cut.write_bytes(CLIP_0870.read_bytes()[:60_000])  # the RIFF header still gives the whole size
    with pytest.raises(InputError, match=r"truncated file: its header says \d+ bytes but it holds 60000"):
        analyse_speech(cut)


def test_video_without_audio_is_an_input_error(tmp_path):
    video = tmp_path / "silent.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x64:d=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video))
    with pytest.raises(InputError, match="no audio stream") as err:
        load_audio(video)
    assert str(video) in str(err.value)


# --------------------------------------------------------------------------- alignment


def test_forced_alignment_words_and_phones(aligned_0880):
    a = aligned_0880
    assert [w.text for w in a.words] == TEXT_0880.split()
    starts = [w.start_s for w in a.words]
    assert starts == sorted(starts)
    for w, nxt in zip(a.words, a.words[1:]):
        assert w.start_s < w.end_s <= nxt.start_s
    assert 0.0 <= a.words[0].start_s and a.words[-1].end_s <= a.duration_s
    assert_tiles(a)
    # Each word's phones (inside its span) are its dictionary pronunciation.
    for w in a.words:
        inside = [p.label for p in a.phones if w.start_s <= p.start_s and p.end_s <= w.end_s]
        assert inside in pronunciations(w.text), (w.text, inside)
    man = next(w for w in a.words if w.text == "man")
    assert [p.label for p in a.phones if man.start_s <= p.start_s and p.end_s <= man.end_s] == ["M", "AE", "N"]
    # Leading silence: the first word starts after it, and every word's middle is voice-active.
    assert a.phones[0].label == "SIL" and a.words[0].start_s >= a.phones[0].end_s > 0.1
    assert not a.voiced[: int(a.words[0].start_s * a.frame_rate_hz) - 2].any()
    for w in a.words:
        assert a.voiced[int((w.start_s + w.end_s) / 2 * a.frame_rate_hz)], w


# --------------------------------------------------------------------------- recognition


def test_phone_recognition_covers_clip_and_finds_the_phones(recognised_0880):
    a = recognised_0880
    assert a.words == []
    assert_tiles(a)
    expected = Counter(dictionary_phones(TEXT_0880))
    found = Counter(p.label for p in a.phones if p.label != "SIL")
    overlap = sum((expected & found).values()) / sum(expected.values())
    print(f"phone multiset overlap with the transcript: {overlap:.0%}")
    assert overlap >= 0.5


def test_chunked_recognition_covers_long_clip():
    a = analyse_speech(CLIP_0870, chunk_s=3.0)
    assert a.duration_s == pytest.approx(wav_duration_s(CLIP_0870), abs=1e-3)
    assert_tiles(a)
    assert len(a.loudness_db) == len(a.voiced) == len(a.pitch_hz) == int(np.ceil(a.duration_s * 100))
    assert sum(p.label != "SIL" for p in a.phones) > 40  # ~80 phones are spoken in 7 s
    whole = analyse_speech(CLIP_0870)
    expected = Counter(dictionary_phones(TEXT_0870))
    for run in (a, whole):
        found = Counter(p.label for p in run.phones if p.label != "SIL")
        assert sum((expected & found).values()) / sum(expected.values()) >= 0.4


@pytest.fixture(scope="module")
def serial_0870() -> SpeechAnalysis:
    return analyse_speech(CLIP_0870, chunk_s=3.0, workers=1)


def recorded_chunks(monkeypatch) -> list[tuple[str, int]]:
    """(thread name, samples) of each chunk recognised from now on."""
    seen = []
    recognise = speech._recognise_chunk

    def recording(pcm: np.ndarray):
        seen.append((threading.current_thread().name, len(pcm)))
        return recognise(pcm)

    monkeypatch.setattr(speech, "_recognise_chunk", recording)
    return seen


def test_parallel_recognition_matches_serial(monkeypatch, serial_0870):
    chunks = recorded_chunks(monkeypatch)
    a = analyse_speech(CLIP_0870, chunk_s=3.0, workers=2)
    assert len({name for name, _ in chunks if name.startswith("facecli-phones")}) == 2  # two threads decoded
    assert a.phones == serial_0870.phones  # each chunk decodes as if alone, wherever it runs
    assert_tiles(a)
    assert sum(p.label != "SIL" for p in a.phones) > 40
    assert not [t for t in threading.enumerate() if t.name.startswith("facecli-phones")]  # none outlives the call


def test_a_short_clip_is_cut_in_two_in_a_pause(monkeypatch):
    """Both cores work on a 3 s clip: it is recognised in two chunks, cut where it is quiet."""
    chunks = recorded_chunks(monkeypatch)
    a = analyse_speech(CLIP_0880, workers=1)
    assert len(chunks) == 2
    cut_frame = chunks[0][1] // speech.HOP
    assert 0.25 * len(a.loudness_db) <= cut_frame <= 0.75 * len(a.loudness_db)
    assert a.loudness_db[cut_frame] <= np.percentile(a.loudness_db, 20)  # a pause, not a word


def test_stop_ends_the_analysis(monkeypatch):
    stop = threading.Event()
    stop.set()
    chunks = recorded_chunks(monkeypatch)
    with pytest.raises(speech.AnalysisStopped):
        analyse_speech(CLIP_0870, stop=stop)
    assert not chunks


def test_stop_while_recognising(monkeypatch, tmp_path):
    """Set while the first chunk of 46 s of speech decodes: the rest is never decoded."""
    long = concatenate_wavs([CLIPS[c][0] for c in sorted(CLIPS)] * 3, tmp_path / "long.wav")
    stop = threading.Event()
    chunks = recorded_chunks(monkeypatch)
    recognise = speech._recognise_chunk

    def first_sets_stop(pcm: np.ndarray):
        stop.set()
        return recognise(pcm)

    monkeypatch.setattr(speech, "_recognise_chunk", first_sets_stop)
    with pytest.raises(speech.AnalysisStopped):
        analyse_speech(long, stop=stop, workers=2)
    assert len(chunks) <= 2  # at most the chunks already handed to the two threads (of 5 or more)
    assert not [t for t in threading.enumerate() if t.name.startswith("facecli-phones")]


def test_silence_is_not_an_error(tmp_path):
    path = write_wav(tmp_path / "silence.wav", np.zeros(2 * SAMPLE_RATE_HZ))
    a = analyse_speech(path)
    assert a.duration_s == pytest.approx(2.0)
    assert not a.voiced.any()
    assert not a.pitch_hz.any()
    assert all(p.label == "SIL" for p in a.phones)
    assert_tiles(a)


# --------------------------------------------------------------------------- contours


def test_pitch_of_a_harmonic_tone(tmp_path):
    t = np.arange(2 * SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    tone = sum(0.4 / k * np.sin(2 * np.pi * 150.0 * k * t) for k in range(1, 6))
    path = write_wav(tmp_path / "tone.wav", tone / np.abs(tone).max() * 0.5)
    a = analyse_speech(path)
    assert a.voiced.mean() > 0.9
    assert np.median(a.pitch_hz[a.voiced]) == pytest.approx(150.0, abs=5.0)
    assert np.median(pitch_yin(tone)) == pytest.approx(150.0, abs=1.0)


def test_pitch_and_loudness_on_speech(recognised_0880):
    a = recognised_0880
    assert a.frame_rate_hz == 100.0
    pitched = a.pitch_hz[a.voiced & (a.pitch_hz > 0)]
    assert len(pitched) > 0.3 * a.voiced.sum()
    assert np.mean((pitched >= 70) & (pitched <= 300)) > 0.9
    assert not (a.pitch_hz[~a.voiced]).any()
    assert a.loudness_db[a.voiced].mean() > a.loudness_db[~a.voiced].mean() + 10


def test_a_voiced_stretch_too_short_to_recognise(tmp_path):
    """20 ms of tone: pocketsphinx hears nothing in it (no hypothesis at all); that is silence."""
    t = np.arange(int(0.02 * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    analysis = analyse_speech(write_wav(tmp_path / "blip.wav", 0.5 * np.sin(2 * np.pi * 220 * t)))
    assert_tiles(analysis)
