"""pocketsphinx through its C API: the same phones as the Python binding, decoded without the GIL."""

from __future__ import annotations

import queue
import threading

import numpy as np
import pytest

from facecli import speech, sphinx
from facecli.speech import analyse_speech, load_audio
from tests.conftest import CLIPS


def pcm16(path) -> np.ndarray:
    samples, _ = load_audio(path)
    return np.round(samples * 32768.0).clip(-32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def phone_options() -> dict:
    return speech.phone_decoder_options()


@pytest.mark.parametrize("clip", ["0870", "0880"])
def test_c_api_decoder_gives_the_bindings_phones(phone_options, clip):
    assert sphinx.releases_gil()  # the Linux wheel exports the C API
    pcm = pcm16(CLIPS[clip][0])
    ours = sphinx.new_decoder(**phone_options)
    assert isinstance(ours, sphinx.PhoneDecoder)
    found = ours.decode(pcm)
    assert len(found) > 20
    assert found == sphinx._BindingDecoder(phone_options).decode(pcm)
    assert ours.decode(pcm) == found  # a reused decoder starts afresh
    assert ours.decode(np.zeros(160, np.int16)) == []  # nothing heard


def test_decoding_releases_the_gil(phone_options):
    """Python code keeps running in another thread while a decoder works on a 7 s clip."""
    decoder = sphinx.new_decoder(**phone_options)
    pcm = pcm16(CLIPS["0870"][0])
    worker = threading.Thread(target=decoder.decode, args=(pcm,))
    steps = 0
    worker.start()
    while worker.is_alive():
        steps += 1
    worker.join()
    # the binding holds the GIL through the decode: this loop then gets ~14,000 steps (measured)
    assert steps > 100_000


def test_without_the_c_api_the_binding_decodes_serially(monkeypatch):
    monkeypatch.setattr(sphinx, "_library", lambda: None)
    monkeypatch.setattr(speech, "_idle_phone_decoders", queue.SimpleQueue())
    assert isinstance(speech.new_phone_decoder(), sphinx._BindingDecoder)
    assert speech._Recogniser(2).workers == 1  # threads would gain nothing
    fallback = analyse_speech(CLIPS["0880"][0], workers=2)
    monkeypatch.undo()
    assert fallback.phones == analyse_speech(CLIPS["0880"][0], workers=2).phones
