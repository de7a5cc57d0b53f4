"""Speed and accuracy of phone recognition (facecli.speech without a transcript).

Reference: forced alignment of each test clip with its transcript. Scores of a recognition:

* phone match: fraction of reference (non-SIL) phones whose label equals the recognised
  phone at the reference phone's midpoint;
* viseme agreement: fraction of 10 ms frames where the coarse viseme class (bilabial,
  labiodental, rounded, open, spread, silence, other) of recognition and reference agree.

Run: python benchmarks/speech_speed.py [--settings] [--repeat N] [--chunk-s S ...]
``--settings`` sweeps pocketsphinx options on a single decoder (one core), decode time
only, on the clips and on variants of them (other voices, faster, noisy); without it,
times ``analyse_speech`` as shipped (wall and CPU per audio second, best of ``--repeat``
runs: the decoders, loaded by the first, are reused as in a batch) with 1 and 2 recognition
threads (``workers``), on the three clips one by one and on ~31 s and ~62 s files made of them.
Timings on a shared machine are noisy: each line says how busy other processes were.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facecli import speech  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "speech"
CLIPS = {
    "0870": "and mister john dashwood had then leisure to consider how much there might be prudently "
    "in his power to do for them",
    "0880": "he was not an ill disposed young man",
    "0890": "unless to be rather cold hearted and rather selfish is to be ill disposed",
}

VISEMES = {
    **dict.fromkeys(["P", "B", "M"], "bilabial"),
    **dict.fromkeys(["F", "V"], "labiodental"),
    **dict.fromkeys(["W", "UW", "OW", "UH", "AO", "OY", "ER"], "rounded"),
    **dict.fromkeys(["AA", "AE", "AH", "AW", "AY"], "open"),
    **dict.fromkeys(["IY", "IH", "EY", "EH", "Y"], "spread"),
    "SIL": "silence",
}


def clip_path(name: str) -> Path:
    return DATA / f"sense_and_sensibility_01_austen_64kb-{name}.wav"


def frame_labels(phones: list[speech.Phone], n_frames: int) -> list[str]:
    out = ["SIL"] * n_frames
    for p in phones:
        for t in range(int(round(p.start_s * 100)), min(n_frames, int(round(p.end_s * 100)))):
            out[t] = p.label
    return out


def score(ref: list[speech.Phone], hyp_frames: list[str], n_frames: int) -> tuple[float, float, int, int]:
    """(phone matches, phones, viseme-agreeing frames, frames)."""
    ref_frames = frame_labels(ref, n_frames)
    spoken = [p for p in ref if p.label != "SIL"]
    hits = sum(hyp_frames[min(n_frames - 1, int((p.start_s + p.end_s) / 2 * 100))] == p.label for p in spoken)
    agree = sum(VISEMES.get(a, "other") == VISEMES.get(b, "other") for a, b in zip(ref_frames, hyp_frames))
    return hits, len(spoken), agree, n_frames


# Variants of each clip for robustness (other voices, faster speech, noise). Forced alignment
# of the variants is unreliable, so their reference is the clean clip's, its times scaled.
AUGMENT = {  # label: (ffmpeg filter, time scale)
    "higher voice": ("asetrate=17600,aresample=16000", 16000 / 17600),  # pitch and formants +10%
    "lower voice": ("asetrate=14400,aresample=16000", 16000 / 14400),  # -10%
    "faster": ("atempo=1.25", 0.8),
}
NOISE_SNR_DB = 15.0  # white noise, against the RMS of the speech


def _reference(path: Path, text: str) -> tuple[np.ndarray, list[speech.Phone], int]:
    a = speech.analyse_speech(path, transcript=text)
    pcm = np.concatenate(list(speech._iter_pcm(path)))
    return pcm, a.phones, len(a.loudness_db)


def references(augment: bool = False, tmp: Path | None = None) -> dict[str, tuple[np.ndarray, list[speech.Phone], int]]:
    """name -> (pcm, reference phones, frames); with ``augment``, the variants (written under ``tmp``)."""
    refs = {}
    for name, text in CLIPS.items():
        clean, phones, _ = _reference(clip_path(name), text)
        if not augment:
            refs[name] = (clean, phones, -(-len(clean) // speech.HOP))
            continue
        for label, (graph, scale) in AUGMENT.items():
            out = tmp / f"{name}-{label.replace(' ', '_')}.wav"
            subprocess.run(
                [speech.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip_path(name)),
                 "-af", graph, "-ar", "16000", "-ac", "1", str(out)],
                check=True,
            )  # fmt: skip
            pcm = np.concatenate(list(speech._iter_pcm(out)))
            scaled = [speech.Phone(p.label, p.start_s * scale, p.end_s * scale) for p in phones]
            refs[f"{name} {label}"] = (pcm, scaled, -(-len(pcm) // speech.HOP))
        x = clean.astype(np.float64)
        noise = np.random.default_rng(0).standard_normal(len(x))
        speech_rms = np.sqrt(np.mean(x[np.abs(x) > 0.05 * np.abs(x).max()] ** 2))
        noisy = np.clip(x + noise * speech_rms * 10 ** (-NOISE_SNR_DB / 20), -32768, 32767)
        refs[f"{name} noise"] = (noisy.astype(np.int16), phones, -(-len(clean) // speech.HOP))
    return refs


def sweep_decode(refs, options: dict, repeat: int) -> tuple[float, float, float, float]:
    """Decode each clip whole with one decoder built from ``options``.

    Returns (decode seconds per audio second, phone %, viseme %, other processes' CPU as a
    fraction of a core while decoding).
    """
    decoder = speech.new_phone_decoder(**options)
    totals = np.zeros(4)
    spent = other = audio = 0.0
    for pcm, ref, n in refs.values():
        best = (float("inf"), 0.0)
        for _ in range(repeat):
            b0, c0 = _busy_s(), time.process_time()
            t0 = time.perf_counter()
            found = speech.recognise_phones(decoder, pcm)  # decoded as by a fresh decoder
            w = time.perf_counter() - t0
            best = min(best, (w, max(0.0, _busy_s() - b0 - (time.process_time() - c0))))
        spent += best[0]
        other += best[1]
        audio += len(pcm) / speech.SAMPLE_RATE_HZ
        spans = speech._tile(found, n)
        hyp = ["SIL"] * n
        for lab, s, e in spans:
            hyp[s:e] = [lab] * (e - s)
        totals += score(ref, hyp, n)
    return spent / audio, 100 * totals[0] / totals[1], 100 * totals[2] / totals[3], other / spent


def long_clip(refs, tmp: Path, repeat: int = 4) -> tuple[Path, list[speech.Phone], int]:
    """The three clips, ``repeat`` times over, in one wav (~62 s); its reference, concatenated."""
    parts, phones, offset = [], [], 0
    for _ in range(repeat):
        for pcm, ref, n in refs.values():
            pcm = np.pad(pcm, (0, n * speech.HOP - len(pcm)))  # whole frames: references stay aligned
            parts.append(pcm)
            phones += [speech.Phone(p.label, p.start_s + offset / 100, p.end_s + offset / 100) for p in ref]
            offset += n
    path = tmp / "long.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(speech.SAMPLE_RATE_HZ)
        w.writeframes(np.concatenate(parts).astype("<i2").tobytes())
    return path, phones, offset


def _busy_s() -> float:
    """CPU seconds spent by the whole machine (all processes), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def shipped(files: dict[str, tuple[Path, list[speech.Phone], int]], repeat: int, **kwargs) -> str:
    """analyse_speech(path, **kwargs): wall and CPU (process + children) per audio second, scores."""
    totals = np.zeros(4)
    wall = cpu = other = audio = 0.0
    for path, ref, n in files.values():
        best = (float("inf"), 0.0, 0.0)
        for _ in range(repeat):
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            b0 = _busy_s()
            t0 = time.perf_counter()
            a = speech.analyse_speech(path, **kwargs)
            w = time.perf_counter() - t0
            b1 = _busy_s()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            c = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) + (
                c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime
            )
            best = min(best, (w, c, max(0.0, b1 - b0 - c)))
        totals += score(ref, frame_labels(a.phones, n), n)
        wall += best[0]
        cpu += best[1]
        other += best[2]
        audio += a.duration_s
    return (
        f"{audio:6.1f} s audio: wall {wall / audio:.3f} s/s, CPU {cpu / audio:.3f} s/s, "
        f"phone {100 * totals[0] / totals[1]:.1f}%, viseme {100 * totals[2] / totals[3]:.1f}% "
        f"(other processes' CPU meanwhile: {other / wall:.0%} of a core)"
    )


OLD = dict(allphone_ci=False, beam=1e-14, pbeam=1e-14, lw=2.0)
SETTINGS: list[tuple[str, dict]] = [
    ("CD, beam 1e-14, pbeam 1e-14, lw 2 (old)", OLD),
    ("CD, old + ds 2", {**OLD, "ds": 2}),
    ("CD, old + topn 2", {**OLD, "topn": 2}),
    ("CD, old + topn 1", {**OLD, "topn": 1}),
    ("CD, old + maxhmmpf 1000", {**OLD, "maxhmmpf": 1000}),
    ("CD, old + pl_window 0, fwdflat/bestpath off", {**OLD, "pl_window": 0, "fwdflat": False, "bestpath": False}),
    ("CD, beam 1e-10, pbeam 1e-10", {**OLD, "beam": 1e-10, "pbeam": 1e-10}),
    ("CD, beam 1e-10, pbeam 1e-14", {**OLD, "beam": 1e-10}),
    ("CD, beam 1e-30, pbeam 1e-10", {**OLD, "beam": 1e-30, "pbeam": 1e-10}),
    ("CD, beam 1e-30, pbeam 1e-8", {**OLD, "beam": 1e-30, "pbeam": 1e-8}),
    ("CD, beam 1e-30, pbeam 1e-7 (chosen)", {**OLD, "beam": 1e-30, "pbeam": 1e-7}),
    ("CD, beam 1e-30, pbeam 1e-6", {**OLD, "beam": 1e-30, "pbeam": 1e-6}),
    ("CD, beam 1e-30, pbeam 1e-5", {**OLD, "beam": 1e-30, "pbeam": 1e-5}),
    ("CD, beam 1e-30, pbeam 1e-7, lw 1.5", {**OLD, "beam": 1e-30, "pbeam": 1e-7, "lw": 1.5}),
    ("CD, beam 1e-30, pbeam 1e-7, lw 2.5", {**OLD, "beam": 1e-30, "pbeam": 1e-7, "lw": 2.5}),
    ("CD, beam 1e-30, pbeam 1e-7, ds 2", {**OLD, "beam": 1e-30, "pbeam": 1e-7, "ds": 2}),
    ("CD, beam 1e-30, pbeam 1e-7, topn 2", {**OLD, "beam": 1e-30, "pbeam": 1e-7, "topn": 2}),
    ("CI, defaults (lw 6.5, beams 1e-48)", dict(allphone_ci=True)),
    ("CI, beam 1e-14, pbeam 1e-14, lw 2", {**OLD, "allphone_ci": True}),
    ("CI, beam 1e-30, pbeam 1e-30, lw 3", {**OLD, "allphone_ci": True, "beam": 1e-30, "pbeam": 1e-30, "lw": 3.0}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", action="store_true", help="sweep decoder options (one core)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--chunk-s", type=float, nargs="+", default=[speech.CHUNK_S], help="analyse_speech chunk_s")
    args = parser.parse_args()
    refs = references()
    if args.settings:
        with tempfile.TemporaryDirectory() as tmp:
            augmented = references(augment=True, tmp=Path(tmp))
        print(
            f"{'setting':46s} {'s/audio s':>9s} {'phone %':>8s} {'viseme %':>9s} {'aug. phone %':>13s} "
            f"{'aug. viseme %':>14s} {'other load':>10s}"
        )
        for label, options in SETTINGS:
            rate, phone, vis, load = sweep_decode(refs, options, args.repeat)
            _, aug_phone, aug_vis, _ = sweep_decode(augmented, options, 1)
            print(
                f"{label:46s} {rate:9.3f} {phone:8.1f} {vis:9.1f} {aug_phone:13.1f} {aug_vis:14.1f} {load:10.0%}",
                flush=True,
            )
    else:
        clips = {name: (clip_path(name), ref, n) for name, (_, ref, n) in refs.items()}
        with tempfile.TemporaryDirectory() as tmp:
            sets = {"3 clips": clips}
            for repeat in (2, 4):
                path, phones, n = long_clip(refs, Path(tmp), repeat)
                sets[f"{n / 100:.0f} s"] = {"long": (path.rename(path.with_name(f"long{repeat}.wav")), phones, n)}
            for label, files in sets.items():
                for chunk_s in args.chunk_s:
                    for workers in (1, 2):
                        line = shipped(files, args.repeat, chunk_s=chunk_s, workers=workers)
                        print(f"{label:8s} chunk {chunk_s:4.0f} s, {workers} thread(s): {line}", flush=True)


if __name__ == "__main__":
    main()
