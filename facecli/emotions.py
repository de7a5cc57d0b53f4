"""Expressions, valence and arousal from action units, with the reasoning spelled out (``classify``).

Each expression has an EMFACS-style prototype (Friesen & Ekman; the AU combinations of Ekman,
Friesen & Hager's FACS investigator's guide): weighted AUs that support it and AUs that speak
against it. An expression's evidence is the weighted mean of its AUs' activations (0-1) minus
the penalties; neutral has a fixed evidence, so a face with nothing moving reads neutral; a
softmax turns evidence into probabilities. Contempt is the one asymmetric prototype: a lip
corner pulled on one side only. Valence and arousal are the probability-weighted positions of
the expressions on Russell's circumplex. The tables are in docs/classify.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .action_units import MAX_INTENSITY, NAMES, PRESENT_AT
from .results import AUS, EXPRESSIONS

NEUTRAL_EVIDENCE = 0.15
TEMPERATURE = 0.08  # softmax temperature, in evidence units: 0.1 more evidence is e^1.25 the odds


@dataclass(frozen=True)
class Prototype:
    support: dict[int, float]  # AU -> weight (they sum to 1)
    against: dict[int, float]  # AU -> penalty per unit of its activation
    reading: str  # what the combination looks like, for explanations


PROTOTYPES = {
    "happiness": Prototype({12: 0.7, 6: 0.3}, {15: 0.3, 4: 0.2}, "a smile"),
    "sadness": Prototype({15: 0.4, 1: 0.35, 4: 0.25}, {12: 0.5}, "lowered lip corners under raised inner brows"),
    "surprise": Prototype({1: 0.25, 2: 0.25, 26: 0.3, 5: 0.2}, {4: 0.3, 12: 0.2}, "raised brows and a dropped jaw"),
    # fear's brows are raised *and* drawn together, its lips stretched: AU4 and AU20 weigh most
    "fear": Prototype({1: 0.15, 2: 0.1, 4: 0.3, 5: 0.1, 20: 0.3, 26: 0.05}, {12: 0.4},
                      "raised, drawn-together brows with widened eyes and stretched lips"),
    "disgust": Prototype({9: 0.45, 10: 0.35, 15: 0.1, 17: 0.1}, {12: 0.3}, "a wrinkled nose and a raised upper lip"),
    "anger": Prototype({4: 0.4, 7: 0.2, 23: 0.25, 5: 0.15}, {12: 0.4, 1: 0.2},
                       "lowered brows, tightened lids and pressed lips"),
}
CONTEMPT_FROM = 0.15  # lip-corner asymmetry below this is a face's own, not contempt
DUCHENNE_AT = 0.3  # AU6 activation with AU12 that makes a smile a Duchenne smile
# (valence, arousal) on Russell's circumplex, approximate placements of the basic emotions.
CIRCUMPLEX = {
    "neutral": (0.0, 0.0), "happiness": (0.8, 0.5), "sadness": (-0.7, -0.4), "surprise": (0.3, 0.8),
    "fear": (-0.6, 0.8), "disgust": (-0.7, 0.3), "anger": (-0.6, 0.7), "contempt": (-0.5, 0.2),
}


def _au(activation: np.ndarray, au: int) -> np.ndarray:
    return activation[:, AUS.index(au)]


def evidence(activation: np.ndarray, asymmetry: np.ndarray) -> np.ndarray:
    """(N, len(AUS)) AU activations, (N,) lip-corner asymmetry -> (N, 8) evidence in EXPRESSIONS order."""
    out = np.zeros((len(activation), len(EXPRESSIONS)))
    out[:, 0] = NEUTRAL_EVIDENCE
    for name, proto in PROTOTYPES.items():
        support = sum(weight * _au(activation, au) for au, weight in proto.support.items())
        against = sum(penalty * _au(activation, au) for au, penalty in proto.against.items())
        out[:, EXPRESSIONS.index(name)] = support - against
    out[:, EXPRESSIONS.index("contempt")] = asymmetry - CONTEMPT_FROM
    return out


def probabilities(activation: np.ndarray, asymmetry: np.ndarray) -> np.ndarray:
    """(N, 8) expression probabilities in EXPRESSIONS order."""
    scaled = evidence(activation, asymmetry) / TEMPERATURE
    scaled -= scaled.max(axis=1, keepdims=True)
    odds = np.exp(scaled)
    return (odds / odds.sum(axis=1, keepdims=True)).astype(np.float32)


def valence_arousal(probs: np.ndarray) -> np.ndarray:
    """(N, 8) probabilities -> (N, 2) valence and arousal in [-1, 1]."""
    return (probs @ np.array([CIRCUMPLEX[name] for name in EXPRESSIONS])).astype(np.float32)


def _observed(intensity: np.ndarray, aus: list[int]) -> str:
    parts = [f"AU{au} {NAMES[au]} {intensity[AUS.index(au)]:.1f}" for au in aus]
    return " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)


def explain(intensity: np.ndarray, probs: np.ndarray, asymmetry: float, by: str | None = None) -> str:
    """One sentence for one face: the key AUs (0-5), what they make, and the conclusion.

    e.g. "AU6 cheek raiser 2.1 and AU12 lip corner puller 3.4: a Duchenne smile, so happiness (0.86)".
    ``by``: who concluded when it was not the AU rules (e.g. an ONNX model): the AUs seen are
    listed, and the conclusion is credited to it.
    """
    top = EXPRESSIONS[int(np.argmax(probs))]
    conclusion = f"{top} ({probs[EXPRESSIONS.index(top)]:.2f})"
    present = sorted((au for au in AUS if intensity[AUS.index(au)] >= PRESENT_AT),
                     key=lambda au: -intensity[AUS.index(au)])
    if by:
        seen = _observed(intensity, sorted(present[:3])) if present else "no action unit at 1 or more"
        return f"{seen}; {by} says {conclusion}"
    if top == "neutral":
        seen = f"only {_observed(intensity, sorted(present[:2]))}" if present else "no action unit at 1 or more"
        return f"{seen}: nothing that makes an expression, so {conclusion}"
    if top == "contempt":
        return f"a lip corner pulled on one side only (asymmetry {asymmetry:.2f}): so {conclusion}"
    proto = PROTOTYPES[top]
    key = sorted(proto.support, key=lambda au: -proto.support[au] * intensity[AUS.index(au)])
    key = [au for au in key if intensity[AUS.index(au)] >= PRESENT_AT][:3] or key[:1]
    reading = proto.reading
    if top == "happiness" and intensity[AUS.index(6)] >= DUCHENNE_AT * MAX_INTENSITY:
        reading = "a Duchenne smile"
    return f"{_observed(intensity, sorted(key))}: {reading}, so {conclusion}"


# ---------------------------------------------------------------- episodes and summaries

SEGMENT_ON = 0.5  # an episode holds while its expression's probability stays at or above this
SEGMENT_GAP_FRAMES = 2  # dips this short do not end an episode
SEGMENT_MIN_FRAMES = 3


@dataclass
class Segment:
    face_id: int
    expression: str
    onset_frame: int
    apex_frame: int
    offset_frame: int
    onset_s: float
    apex_s: float
    offset_s: float
    peak: float
    explanation: str = ""


@dataclass
class _Open:
    segment: Segment
    last_seen: int


@dataclass
class EpisodeFinder:
    """Groups each track's frames into expression episodes (onset, apex, offset), streaming:
    only the episodes still open are held."""

    open: dict[int, _Open] = field(default_factory=dict)
    done: list[Segment] = field(default_factory=list)

    def push(self, face_id: int, frame: int, time_s: float, probs: np.ndarray, explanation: str) -> None:
        best = int(np.argmax(probs[1:])) + 1  # the strongest expression other than neutral
        name, p = EXPRESSIONS[best], float(probs[best])
        current = self.open.get(face_id)
        if current and (current.segment.expression != name or p < SEGMENT_ON) \
                and frame - current.last_seen > SEGMENT_GAP_FRAMES:
            self._close(face_id)
            current = None
        if p < SEGMENT_ON:
            return
        if current is None or current.segment.expression != name:
            if current:
                self._close(face_id)
            self.open[face_id] = _Open(Segment(face_id, name, frame, frame, frame, time_s, time_s, time_s, p,
                                               explanation), frame)
            return
        seg = current.segment
        seg.offset_frame, seg.offset_s, current.last_seen = frame, time_s, frame
        if p > seg.peak:
            seg.apex_frame, seg.apex_s, seg.peak, seg.explanation = frame, time_s, p, explanation

    def _close(self, face_id: int) -> None:
        seg = self.open.pop(face_id).segment
        if seg.offset_frame - seg.onset_frame + 1 >= SEGMENT_MIN_FRAMES:
            self.done.append(seg)

    def finish(self) -> list[Segment]:
        for face_id in list(self.open):
            self._close(face_id)
        return sorted(self.done, key=lambda s: (s.onset_frame, s.face_id))


@dataclass
class TrackSummary:
    """How often each expression is a track's top label."""

    counts: dict[int, np.ndarray] = field(default_factory=dict)

    def push(self, face_ids: np.ndarray, probs: np.ndarray) -> None:
        for face_id, top in zip(face_ids.tolist(), np.argmax(probs, axis=1).tolist()):
            self.counts.setdefault(face_id, np.zeros(len(EXPRESSIONS), np.int64))[top] += 1

    def summary(self) -> dict[str, dict]:
        """Per track (by face id): the dominant expression, its share of the frames, every share."""
        out = {}
        for face_id, counts in sorted(self.counts.items()):
            shares = counts / counts.sum()
            top = int(np.argmax(shares))
            out[str(face_id)] = {"dominant": EXPRESSIONS[top], "share": round(float(shares[top]), 3),
                                 "frames": int(counts.sum()),
                                 "shares": {name: round(float(v), 3) for name, v in zip(EXPRESSIONS, shares)}}
        return out
