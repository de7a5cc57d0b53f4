"""Speech analysis: phones with timings, loudness, voice activity and pitch.

Audio goes through the bundled ffmpeg (any format it reads: wav, mp3, m4a, flac, ogg, or
the first audio stream of a video), resampled to 16 kHz mono 16-bit and streamed, so
memory does not grow with the length of the recording.

Phones come from pocketsphinx with the English models its wheel ships (acoustic model,
CMU dictionary, phone language model); nothing is downloaded.

* Without a transcript: phone recognition ("allphone" search with the phone LM), run
  chunk by chunk; each chunk ends at the quietest 10 ms frame of its second half, and the
  last piece, if longer than ``SPLIT_LAST_MIN_S``, is cut in two at the quietest frame of
  its middle half, so cuts fall in pauses and even a short clip has two chunks. Each chunk
  is decoded on its own (as by a fresh decoder), in threads, one per CPU core up to
  ``MAX_RECOGNITION_WORKERS`` (the decoders release the GIL: facecli.sphinx), with the same
  result as one by one.
* With a transcript: forced alignment (word pass, then a phone/state pass). The whole
  utterance must be decoded at once, so this is limited to ``MAX_ALIGN_S`` (120 s) of audio;
  longer audio with a transcript raises UsageError (split the audio and the text).

Phones tile the audio: from 0 to ``duration_s`` with no gaps or overlaps; stretches the
recogniser leaves out and noise fillers become ``SIL``.

Contours, one value per 10 ms frame (frame t covers samples [160 t, 160 t + 160)):

* ``loudness_db``: RMS level of the frame in dBFS (full scale sine = -3 dB), floored at -120.
* ``voiced``: voice activity by energy: level above max(-60 dBFS, min(noise floor + 12 dB,
  95th percentile - 6 dB)), the noise floor being the chunk's 10th percentile; smoothed
  by a 5-frame median. Digital silence is never active. A chunk with no pause in it (floor
  = speech) loses its quietest speech frames.
* ``pitch_hz``: f0 by YIN (cumulative mean normalised difference, threshold 0.3, parabolic
  refinement) on a 25 ms window centred on the frame, lags for 60-400 Hz; 0 where the frame
  is not voice-active or has no clear period (unvoiced consonants, noise).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import re
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import sphinx
from .errors import BackendUnavailable, InputError, UsageError
from .media import _check_file, _ffmpeg_input, _last_line, ffmpeg_exe, ffmpeg_output

SAMPLE_RATE_HZ = 16000
FRAME_RATE_HZ = 100.0  # pocketsphinx's frame rate, and that of every contour
HOP = SAMPLE_RATE_HZ // 100  # samples per 10 ms frame
MAX_ALIGN_S = 120.0  # forced alignment decodes the whole audio at once
CHUNK_S = 10.0  # analysis chunk: bounds memory; several chunks let recognition use several cores
SPLIT_LAST_MIN_S = 2.0  # a last piece this long is cut in two (both cores work on a short clip)
MAX_RECOGNITION_WORKERS = 2
READ_BLOCK_SAMPLES = SAMPLE_RATE_HZ  # one second per pipe read

PITCH_MIN_HZ = 60.0
PITCH_MAX_HZ = 400.0
YIN_WINDOW = 400  # 25 ms
YIN_THRESHOLD = 0.3
LOUDNESS_FLOOR_DB = -120.0
VAD_ABS_DB = -60.0  # never voice-active below this level
VAD_ABOVE_FLOOR_DB = 12.0  # above the chunk's noise floor (10th percentile) ...
VAD_BELOW_PEAK_DB = 6.0  # ... but at most this far under its 95th percentile (steady sounds)

_SILENCE = "SIL"


@dataclass(frozen=True)
class Phone:
    label: str  # ARPAbet without stress digits; 'SIL' for silence and noise
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Word:
    text: str  # the dictionary word (lower case, no pronunciation variant)
    start_s: float
    end_s: float


@dataclass
class SpeechAnalysis:
    duration_s: float
    phones: list[Phone]
    words: list[Word]  # empty without a transcript
    frame_rate_hz: float  # of the contours below: 100
    loudness_db: np.ndarray  # (T,) float32 RMS level in dBFS per 10 ms frame
    voiced: np.ndarray  # (T,) bool voice activity
    pitch_hz: np.ndarray  # (T,) float32 f0, 0 where unvoiced


# --------------------------------------------------------------------------- decoding audio


def _decode_cmd(path: Path) -> list[str]:
    return [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error",
        "-i", _ffmpeg_input(path),
        "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-ac", "1", "-ar", str(SAMPLE_RATE_HZ), "-acodec", "pcm_s16le", "-f", "s16le", "pipe:1",
    ]  # fmt: skip


def _iter_pcm(path: str | Path, block_samples: int = READ_BLOCK_SAMPLES) -> Iterator[np.ndarray]:
    """Yield int16 mono 16 kHz blocks from ffmpeg; InputError when nothing decodes."""
    path = _check_file(path)
    total = 0
    pending = b""
    with ffmpeg_output(_decode_cmd(path)) as (proc, pump):
        while True:
            data = proc.stdout.read(block_samples * 2)
            if not data:
                break
            data = pending + data
            usable = len(data) - len(data) % 2
            pending = data[usable:]
            if usable:
                total += usable // 2
                yield np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
        proc.wait()
        pump.join()
    tail = pump.tail
    log = " | ".join(tail)
    if proc.returncode != 0 or total == 0:
        low = log.lower()
        if "matches no streams" in low or ("output file" in low and "does not contain any stream" in low):
            why = "has no audio stream; pass a file with sound"
        elif proc.returncode != 0:
            said = _last_line(tail) if tail else f"exit {proc.returncode}"
            why = f"ffmpeg cannot decode its audio ({said}); re-export it as wav"
        else:
            why = "its audio stream holds no samples; re-export it"
        raise InputError(why, path)


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode any audio ffmpeg reads to float32 mono in [-1, 1) at 16000 Hz.

    Returns (samples, 16000). Raises InputError naming the file when it is missing, empty,
    has no audio stream or cannot be decoded. Loads the whole file: for long recordings
    ``analyse_speech`` streams instead.
    """
    blocks = list(_iter_pcm(path))
    return np.concatenate(blocks).astype(np.float32) / 32768.0, SAMPLE_RATE_HZ


# --------------------------------------------------------------------------- contours


def _frames(x: np.ndarray, length: int, start_offset: int) -> np.ndarray:
    """(T, length) views: row t starts at sample HOP*t + start_offset (zero padded outside x)."""
    n_frames = -(-len(x) // HOP)
    left = max(0, -start_offset)
    right = max(0, HOP * (n_frames - 1) + start_offset + length - len(x))
    padded = np.pad(x, (left, right))
    first = start_offset + left
    view = np.lib.stride_tricks.sliding_window_view(padded, length)
    return view[first : first + HOP * n_frames : HOP][:n_frames]


def loudness_db(x: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of each 10 ms frame of float samples in [-1, 1]."""
    frames = _frames(x.astype(np.float64), HOP, 0)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    with np.errstate(divide="ignore"):
        db = 20.0 * np.log10(rms)
    return np.maximum(db, LOUDNESS_FLOOR_DB).astype(np.float32)


def voice_activity(level_db: np.ndarray) -> np.ndarray:
    """Energy voice activity (see the module docstring), 5-frame median smoothing."""
    if level_db.size == 0:
        return np.zeros(0, dtype=bool)
    floor, peak = (float(v) for v in np.percentile(level_db, [10, 95]))
    threshold = max(VAD_ABS_DB, min(floor + VAD_ABOVE_FLOOR_DB, peak - VAD_BELOW_PEAK_DB))
    active = (level_db > threshold).astype(np.uint8)
    padded = np.pad(active, 2, mode="edge")
    smoothed = np.median(np.lib.stride_tricks.sliding_window_view(padded, 5), axis=1) > 0.5
    return smoothed & (level_db > VAD_ABS_DB)


def pitch_yin(x: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
    """YIN f0 (Hz) per 10 ms frame of 16 kHz float samples, 60-400 Hz; 0 where aperiodic.

    Frames where ``active`` is False are skipped (0).
    """
    n_frames = -(-len(x) // HOP)
    out = np.zeros(n_frames, dtype=np.float32)
    if active is None:
        active = np.ones(n_frames, dtype=bool)
    idx = np.flatnonzero(active[:n_frames])
    if idx.size == 0:
        return out
    min_lag = int(SAMPLE_RATE_HZ / PITCH_MAX_HZ)  # 40
    max_lag = int(np.ceil(SAMPLE_RATE_HZ / PITCH_MIN_HZ))  # 267
    seg_len = YIN_WINDOW + max_lag
    # Window of YIN_WINDOW centred on the frame centre; lagged copies extend to the right.
    segs = _frames(x.astype(np.float64), seg_len, HOP // 2 - YIN_WINDOW // 2)
    nfft = 1 << int(np.ceil(np.log2(seg_len + YIN_WINDOW)))
    for lo in range(0, idx.size, 2048):  # batches bound the FFT memory
        sel = idx[lo : lo + 2048]
        seg = segs[sel]
        head = seg[:, :YIN_WINDOW]
        spec = np.conj(np.fft.rfft(head, nfft)) * np.fft.rfft(seg, nfft)
        corr = np.fft.irfft(spec, nfft)[:, : max_lag + 1]  # r(tau) = sum_j x[j] x[j+tau]
        csum = np.concatenate([np.zeros((len(sel), 1)), np.cumsum(seg**2, axis=1)], axis=1)
        taus = np.arange(max_lag + 1)
        energy_lag = csum[:, taus + YIN_WINDOW] - csum[:, taus]  # sum_j x[j+tau]^2
        diff = np.maximum(energy_lag[:, :1] + energy_lag - 2.0 * corr, 0.0)
        cum = np.cumsum(diff[:, 1:], axis=1)
        cmnd = np.ones_like(diff)
        with np.errstate(divide="ignore", invalid="ignore"):
            cmnd[:, 1:] = np.where(cum > 0, diff[:, 1:] * taus[1:] / cum, 1.0)
        band = cmnd[:, min_lag : max_lag + 1]
        below = band < YIN_THRESHOLD
        has = below.any(axis=1)
        first = np.argmax(below, axis=1)
        for row in np.flatnonzero(has):
            k = first[row]
            while k + 1 < band.shape[1] and band[row, k + 1] < band[row, k]:
                k += 1  # walk down to the local minimum
            tau = float(k + min_lag)
            if 0 < k < band.shape[1] - 1:
                a, b, c = band[row, k - 1], band[row, k], band[row, k + 1]
                denom = a - 2 * b + c
                if denom > 0:
                    tau += 0.5 * (a - c) / denom
            f0 = SAMPLE_RATE_HZ / tau
            if PITCH_MIN_HZ <= f0 <= PITCH_MAX_HZ:
                out[sel[row]] = f0
    return out


# --------------------------------------------------------------------------- pocketsphinx


def _model_dir() -> str:
    """The English models inside the pocketsphinx wheel (nothing is downloaded)."""
    try:
        import pocketsphinx
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise BackendUnavailable(f"pocketsphinx is not installed ({exc}); pip install 'pocketsphinx>=5.1.1,<6'") from exc
    return os.path.join(pocketsphinx.get_model_path(), "en-us")


def _model_options() -> dict:
    return dict(hmm=os.path.join(_model_dir(), "en-us"), loglevel="FATAL", lm=None)


def _decoder(**options: object):
    import pocketsphinx

    return pocketsphinx.Decoder(**_model_options(), **options)


# Phone recognition settings. Context-dependent phones (allphone_ci=False) and a low LM weight: on
# the three test clips this finds 76-79% of the transcript phones, against 48-73% with the
# context-independent default. Speed is set by pbeam: a phone HMM whose best state falls pbeam
# below the frame's best is dropped, and the cost is the phone exits times their successor links.
# On the test clips (benchmarks/speech_speed.py, one core; viseme agreement with forced alignment
# per 10 ms):
#   beam = pbeam = 1e-14 (before):   0.58 s per audio second, viseme 82.0%, variants 70.1%
#   beam 1e-30, pbeam 1e-8:          0.16 s/s, 83.6%, 70.6%
#   beam 1e-30, pbeam 1e-7 (chosen): 0.13 s/s, 82.4%, 69.9%
#   beam 1e-30, pbeam 1e-6 / 1e-5:   0.10 / 0.08 s/s, 81.0 / 73.0%, 67.9 / 64.3%
#   context-independent, lw 2 or 3:  0.04 s/s, 77.7-79.5%, 64-65%
# (variants: the clips with the voice 10% higher and lower, 25% faster, and white noise at
# 15 dB SNR). ds 2 loses 8 points of viseme agreement for a few % of time; topn, maxhmmpf and
# fwdflat/bestpath save little or nothing. beam only gates entry into a phone (LM score
# included) and costs little, so it is wide: where lw times the LM penalty of the next phone
# exceeds beam or pbeam, the search cannot leave the current phone (beam 1e-10, or lw 3 with
# pbeam 1e-7, stay in one phone for seconds on some clips).
PHONE_SEARCH = dict(allphone_ci=False, beam=1e-30, pbeam=1e-7, lw=2.0)

_idle_phone_decoders: queue.SimpleQueue = queue.SimpleQueue()


def phone_decoder_options(**search: object) -> dict:
    """pocketsphinx options of the phone decoder; ``search`` overrides PHONE_SEARCH."""
    model = os.path.join(_model_dir(), "en-us-phone.lm.bin")
    return {**_model_options(), "allphone": model, **PHONE_SEARCH, **search}


def new_phone_decoder(**search: object):
    """A phone decoder (~0.4 s: the models load)."""
    return sphinx.new_decoder(**phone_decoder_options(**search))


def recognise_phones(decoder, pcm: np.ndarray) -> list[tuple[str, int, int]]:
    """(label, first frame, end frame) of the phones a phone decoder hears in int16 ``pcm``."""
    return [(_label(word), start, end) for word, start, end in decoder.decode(pcm)]


def _recognise_chunk(pcm: np.ndarray) -> list[tuple[str, int, int]]:
    """Phones of one chunk, decoded as by a fresh decoder. Decoders are kept for reuse, one per
    thread that has run at once: a later file (a batch) does not load the models again. A
    decoder whose decoding failed is dropped."""
    try:
        decoder = _idle_phone_decoders.get_nowait()
    except queue.Empty:
        decoder = new_phone_decoder()
    found = recognise_phones(decoder, pcm)
    _idle_phone_decoders.put(decoder)
    return found


def _label(name: str) -> str:
    """ARPAbet label without stress; fillers (SIL, +NSN+, +SPN+, ...) become SIL."""
    if name.startswith("+") or name.upper() in ("SIL", "<SIL>", "<S>", "</S>"):
        return _SILENCE
    return re.sub(r"\d", "", name).upper()


def _tile(spans: list[tuple[str, int, int]], n_frames: int) -> list[tuple[str, int, int]]:
    """Half-open frame spans [start, end) -> spans covering [0, n_frames) without gaps/overlaps."""
    out: list[tuple[str, int, int]] = []
    cursor = 0
    for label, start, end in sorted(spans, key=lambda s: s[1]):
        start, end = max(start, cursor), min(end, n_frames)
        if end <= start:
            continue
        if start > cursor:
            out.append((_SILENCE, cursor, start))
        out.append((label, start, end))
        cursor = end
    if cursor < n_frames:
        out.append((_SILENCE, cursor, n_frames))
    merged: list[tuple[str, int, int]] = []
    for span in out:
        if merged and span[0] == _SILENCE and merged[-1][0] == _SILENCE:
            merged[-1] = (_SILENCE, merged[-1][1], span[2])
        else:
            merged.append(span)
    return merged


def _default_workers() -> int:
    """One thread per usable core up to MAX_RECOGNITION_WORKERS; 1 inside a worker process
    (a batch already runs one file per core)."""
    if multiprocessing.parent_process() is not None:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_RECOGNITION_WORKERS, cores))


class _Recogniser:
    """Phone recognition of the voiced chunks of one file, ``workers`` chunks at a time in
    threads (the decoders release the GIL: facecli.sphinx). Each chunk decodes as by a fresh
    decoder, so the result does not depend on ``workers``. A new chunk waits until fewer than
    ``workers`` are decoding (memory stays bounded: a decoded chunk keeps only its phones);
    ``close`` cancels what has not started and waits for the rest.

    Measured on 2 cores (benchmarks/speech_speed.py; wall seconds per audio second for the
    whole analysis, 1 -> 2 threads): the three 3-7 s clips 0.134 -> 0.093, 31 s 0.131 ->
    0.068, 62 s 0.132 -> 0.069.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers if sphinx.releases_gil() else 1
        self.pool = ThreadPoolExecutor(self.workers, "facecli-phones") if self.workers > 1 else None
        self.chunks: list[tuple[int, int, Future]] = []  # (offset frames, frames, phones), in order

    def add(self, offset: int, pcm: np.ndarray) -> None:
        if self.pool is None:
            future: Future = Future()
            future.set_result(_recognise_chunk(pcm))
        else:
            decoding = [f for _, _, f in self.chunks if not f.done()]
            if len(decoding) >= self.workers:
                wait(decoding, return_when=FIRST_COMPLETED)
            for done in (f for _, _, f in self.chunks if f.done()):
                done.result()  # a chunk that failed stops the file now
            future = self.pool.submit(_recognise_chunk, pcm)
        self.chunks.append((offset, -(-len(pcm) // HOP), future))

    def finish(self) -> list[tuple[str, int, int]]:
        return [(lab, s + offset, e + offset) for offset, n, f in self.chunks for lab, s, e in _tile(f.result(), n)]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)  # waits for at most the chunks decoding


def normalise_transcript(text: str) -> list[str]:
    """Lower case words; punctuation other than inner apostrophes is dropped."""
    words = re.findall(r"[a-z0-9]+(?:'[a-z0-9]+)*", text.lower())
    return words


def _align(pcm: np.ndarray, words: list[str], path: Path) -> tuple[list[tuple[str, int, int]], list[Word]]:
    decoder = _decoder(dict=os.path.join(_model_dir(), "cmudict-en-us.dict"))
    unknown = [w for w in words if decoder.lookup_word(w) is None]
    if unknown:
        raise UsageError(
            f"transcript words not in the pronouncing dictionary: {', '.join(sorted(set(unknown)))}; "
            "spell them as they sound or remove them",
            path,
        )
    raw = pcm.astype("<i2").tobytes()
    try:
        decoder.set_align_text(" ".join(words))
        decoder.start_utt()
        decoder.process_raw(raw, full_utt=True)
        decoder.end_utt()
        decoder.set_alignment()
        decoder.start_utt()
        decoder.process_raw(raw, full_utt=True)
        decoder.end_utt()
        alignment = decoder.get_alignment()
    except RuntimeError as exc:
        raise InputError(f"the transcript cannot be aligned to the audio ({exc}); check that it matches", path) from exc
    if alignment is None:
        raise InputError("the transcript cannot be aligned to the audio; check that it matches the speech", path)
    phones: list[tuple[str, int, int]] = []
    found: list[tuple[str, int, int]] = []
    for entry in alignment.words():
        name = re.sub(r"\(\d+\)$", "", entry.name)
        if _label(name) != _SILENCE:
            found.append((name, entry.start, entry.start + entry.duration))
    for entry in alignment.phones():
        phones.append((_label(entry.name), entry.start, entry.start + entry.duration))
    if [w for w, _, _ in found] != words:
        raise InputError("the transcript cannot be aligned to the audio; check that it matches the speech", path)
    return phones, [Word(w, s / FRAME_RATE_HZ, e / FRAME_RATE_HZ) for w, s, e in found]


# --------------------------------------------------------------------------- analysis


def _cut_at_pause(pcm: np.ndarray, start_fraction: float, end_fraction: float) -> int:
    """Where ``pcm`` is cut, in samples: the start of its quietest 10 ms frame between the two
    fractions of its length (never 0)."""
    level_db = loudness_db(pcm.astype(np.float32) / 32768.0)
    start, end = int(start_fraction * len(level_db)), max(int(end_fraction * len(level_db)), 1)
    return max(start + int(np.argmin(level_db[start:end])), 1) * HOP


class AnalysisStopped(Exception):
    """analyse_speech's ``stop`` event was set: nothing is returned."""


def _check_stop(stop: threading.Event | None, path: Path) -> None:
    if stop is not None and stop.is_set():
        raise AnalysisStopped(str(path))


def analyse_speech(
    path: str | Path, transcript: str | None = None, chunk_s: float = CHUNK_S, workers: int | None = None,
    stop: threading.Event | None = None,
) -> SpeechAnalysis:
    """Phones, words (with a transcript), loudness, voice activity and pitch of any audio.

    Streams the audio in chunks of about ``chunk_s`` seconds cut at the quietest frame of
    each chunk's second half (the last piece, from SPLIT_LAST_MIN_S on, in two at the
    quietest frame of its middle half), so memory is bounded by the chunk (plus the
    per-frame contours, 4 bytes x 3 per 10 ms, and ``workers`` chunks in recognition).
    Without a transcript the chunks are recognised by ``workers`` threads (default: one per
    core, at most MAX_RECOGNITION_WORKERS; 1 inside a multiprocessing worker); the result
    does not depend on ``workers``. With a transcript the whole audio is aligned at once,
    which is limited to MAX_ALIGN_S seconds (UsageError beyond). Silence is not an error:
    the phones are then one SIL span and no frame is voiced. Setting ``stop`` (from another
    thread) ends the analysis within about a second (a forced alignment under way runs to
    its end): it raises AnalysisStopped.
    """
    if chunk_s <= 0:
        raise UsageError(f"chunk_s must be positive, got {chunk_s}")
    if workers is None:
        workers = _default_workers()
    if workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    path = Path(path)
    words_in: list[str] | None = None
    if transcript is not None:
        words_in = normalise_transcript(transcript)
        if not words_in:
            raise UsageError("the transcript holds no words; pass the spoken text or no transcript", path)
    chunk_frames = max(2, int(round(chunk_s * FRAME_RATE_HZ)))
    chunk_samples = chunk_frames * HOP

    loud_parts: list[np.ndarray] = []
    voiced_parts: list[np.ndarray] = []
    pitch_parts: list[np.ndarray] = []
    spans: list[tuple[str, int, int]] = []
    kept: list[np.ndarray] = []  # audio kept for forced alignment
    kept_samples = 0
    recogniser = _Recogniser(workers) if words_in is None else None
    offset_frames = 0
    total = 0

    def analyse_chunk(pcm: np.ndarray) -> None:
        nonlocal offset_frames
        x = pcm.astype(np.float32) / 32768.0
        level = loudness_db(x)
        active = voice_activity(level)
        loud_parts.append(level)
        voiced_parts.append(active)
        pitch_parts.append(pitch_yin(x, active))
        if recogniser is not None and active.any():
            # (chunks without voice activity stay SIL: pocketsphinx dislikes digital silence)
            recogniser.add(offset_frames, pcm)
        offset_frames += len(level)

    try:
        buffer = np.zeros(0, dtype=np.int16)
        for block in _iter_pcm(path):
            _check_stop(stop, path)
            total += len(block)
            if words_in is not None:
                kept_samples += len(block)
                if kept_samples > MAX_ALIGN_S * SAMPLE_RATE_HZ:
                    raise UsageError(
                        f"forced alignment with a transcript is limited to {MAX_ALIGN_S:.0f} s of audio; "
                        "split the audio and the transcript, or omit the transcript for phone recognition",
                        path,
                    )
                kept.append(block)
            buffer = np.concatenate([buffer, block])
            while len(buffer) >= chunk_samples:
                cut = _cut_at_pause(buffer[:chunk_samples], 0.5, 1.0)
                analyse_chunk(buffer[:cut])
                buffer = buffer[cut:]
        if len(buffer) >= SPLIT_LAST_MIN_S * SAMPLE_RATE_HZ:
            cut = _cut_at_pause(buffer, 0.25, 0.75)
            analyse_chunk(buffer[:cut])
            buffer = buffer[cut:]
        if len(buffer):
            analyse_chunk(buffer)
        if recogniser is not None:
            spans = recogniser.finish()
    finally:
        if recogniser is not None:
            recogniser.close()

    duration_s = total / SAMPLE_RATE_HZ
    n_frames = offset_frames
    words: list[Word] = []
    if words_in is not None:
        _check_stop(stop, path)
        pcm = np.concatenate(kept)
        if np.concatenate(voiced_parts).any():
            found, words = _align(pcm, words_in, path)
        else:
            raise InputError("no speech found to align the transcript to; check the audio", path)
        spans = _tile(found, n_frames)
    spans = _tile(spans, n_frames)

    def seconds(frame: int) -> float:
        return min(frame / FRAME_RATE_HZ, duration_s)

    phones = [Phone(lab, seconds(s), seconds(e)) for lab, s, e in spans]
    if phones:
        last = phones[-1]
        phones[-1] = Phone(last.label, last.start_s, duration_s)
    words = [Word(w.text, seconds(int(round(w.start_s * 100))), seconds(int(round(w.end_s * 100)))) for w in words]
    return SpeechAnalysis(
        duration_s=duration_s,
        phones=phones,
        words=words,
        frame_rate_hz=FRAME_RATE_HZ,
        loudness_db=np.concatenate(loud_parts) if loud_parts else np.zeros(0, np.float32),
        voiced=np.concatenate(voiced_parts) if voiced_parts else np.zeros(0, bool),
        pitch_hz=np.concatenate(pitch_parts) if pitch_parts else np.zeros(0, np.float32),
    )
