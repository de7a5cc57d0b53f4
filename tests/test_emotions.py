"""The expression rules, explanations and episodes of ``classify`` on constructed AU patterns."""

from __future__ import annotations

import numpy as np

from facecli.emotions import EpisodeFinder, TrackSummary, explain, probabilities, valence_arousal
from facecli.results import AUS, EXPRESSIONS


def pattern(**aus: float) -> np.ndarray:
    """(1, len(AUS)) activations 0-1 from e.g. ``pattern(AU12=0.8)``."""
    out = np.zeros((1, len(AUS)))
    for name, value in aus.items():
        out[0, AUS.index(int(name[2:]))] = value
    return out


PROTOTYPES = {
    "neutral": pattern(),
    "happiness": pattern(AU6=0.6, AU12=0.8),
    "sadness": pattern(AU1=0.7, AU4=0.4, AU15=0.8),
    "surprise": pattern(AU1=0.8, AU2=0.8, AU5=0.6, AU26=0.8),
    "fear": pattern(AU1=0.7, AU2=0.5, AU4=0.7, AU5=0.7, AU20=0.8, AU26=0.4),
    "disgust": pattern(AU9=0.8, AU10=0.7, AU17=0.3),
    "anger": pattern(AU4=0.9, AU5=0.4, AU7=0.7, AU23=0.8),
}


def test_each_prototype_gets_its_label():
    for name, activation in PROTOTYPES.items():
        probs = probabilities(activation, np.zeros(1))
        assert EXPRESSIONS[int(np.argmax(probs[0]))] == name and abs(probs.sum() - 1.0) < 1e-5
    lopsided = probabilities(pattern(AU12=0.3), np.array([0.6]))
    assert EXPRESSIONS[int(np.argmax(lopsided[0]))] == "contempt"


def test_more_of_an_au_means_more_of_its_expression():
    weak, strong = (probabilities(pattern(AU6=0.2, AU12=a), np.zeros(1))[0, 1] for a in (0.3, 0.9))
    assert strong > weak
    assert probabilities(pattern(AU12=0.9, AU15=0.9), np.zeros(1))[0, 1] < strong  # a depressor speaks against it


def test_valence_and_arousal_sit_where_the_circumplex_puts_them():
    happy, sad, surprised = (valence_arousal(probabilities(PROTOTYPES[n], np.zeros(1)))[0]
                             for n in ("happiness", "sadness", "surprise"))
    assert happy[0] > 0.5 and sad[0] < -0.3 and sad[1] < 0 and surprised[1] > 0.5
    assert np.all(np.abs(valence_arousal(np.eye(len(EXPRESSIONS), dtype=np.float32))) <= 1.0)


def test_explanations_name_the_aus_and_the_conclusion():
    act = PROTOTYPES["happiness"]
    probs = probabilities(act, np.zeros(1))[0]
    sentence = explain(act[0] * 5, probs, 0.0)
    assert sentence.startswith("AU6 cheek raiser 3.0 and AU12 lip corner puller 4.0: a Duchenne smile, so happiness")
    assert explain(np.zeros(len(AUS)), probabilities(pattern(), np.zeros(1))[0], 0.0).startswith("no action unit")


def test_episodes_have_onset_apex_and_offset():
    finder = EpisodeFinder()
    happy = probabilities(PROTOTYPES["happiness"], np.zeros(1))[0]
    calm = probabilities(PROTOTYPES["neutral"], np.zeros(1))[0]
    strengths = [0, 0, 0.4, 0.8, 1.0, 0.7, 0, 0.9, 0.6, 0, 0, 0, 0, 1.0, 0, 0, 0]  # a 1-frame dip; a 1-frame blip
    for frame, k in enumerate(strengths):
        finder.push(7, frame, frame / 25, k * happy + (1 - k) * calm, f"frame {frame}")
    segments = finder.finish()
    assert len(segments) == 1  # the dip is bridged, the blip is too short
    seg = segments[0]
    assert (seg.expression, seg.onset_frame, seg.apex_frame, seg.offset_frame) == ("happiness", 3, 4, 8)
    assert seg.explanation == "frame 4" and abs(seg.offset_s - 8 / 25) < 1e-9


def test_track_summary_gives_the_dominant_expression_and_its_share():
    summary = TrackSummary()
    probs = np.concatenate([probabilities(PROTOTYPES[n], np.zeros(1)) for n in ("happiness", "happiness", "anger")])
    summary.push(np.array([3, 3, 3]), probs)
    assert summary.summary()["3"]["dominant"] == "happiness" and summary.summary()["3"]["share"] == round(2 / 3, 3)
