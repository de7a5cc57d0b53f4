"""pocketsphinx decoding that releases the GIL, so several decoders run on several cores.

pocketsphinx's Python binding holds the GIL while it decodes, so threads gain nothing with
it. Its extension module also exports the library's public C API (``ps_init``,
``ps_process_raw``, ...); called through ctypes, which drops the GIL for the length of a
foreign call, the same decoder decodes in parallel threads. The configuration is made by
the binding (``pocketsphinx.Config``) and copied value by value with its type (JSON would
round floats to 6 digits), so both build the very same decoder: ``PhoneDecoder.decode``
gives exactly what ``pocketsphinx.Decoder`` gives (tested).

Where the C API cannot be reached (a build that exports no symbols, as Windows' ``.pyd``
files), ``new_decoder`` returns the binding's decoder behind the same ``decode`` method;
``releases_gil`` tells callers whether threads are worth starting.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

from .errors import BackendUnavailable

_VOID, _TEXT, _INT = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
_SIGNATURES = {  # name: (return type, argument types), from pocketsphinx.h (5.x)
    "ps_config_init": (_VOID, [_VOID]),
    "ps_config_set_bool": (_VOID, [_VOID, _TEXT, _INT]),
    "ps_config_set_int": (_VOID, [_VOID, _TEXT, ctypes.c_long]),
    "ps_config_set_float": (_VOID, [_VOID, _TEXT, ctypes.c_double]),
    "ps_config_set_str": (_VOID, [_VOID, _TEXT, _TEXT]),
    "ps_config_free": (_INT, [_VOID]),
    "ps_init": (_VOID, [_VOID]),
    "ps_free": (_INT, [_VOID]),
    "ps_reinit_feat": (_INT, [_VOID, _VOID]),
    "ps_start_utt": (_INT, [_VOID]),
    "ps_process_raw": (_INT, [_VOID, ctypes.POINTER(ctypes.c_int16), ctypes.c_size_t, _INT, _INT]),
    "ps_end_utt": (_INT, [_VOID]),
    "ps_seg_iter": (_VOID, [_VOID]),
    "ps_seg_next": (_VOID, [_VOID]),
    "ps_seg_word": (_TEXT, [_VOID]),
    "ps_seg_frames": (None, [_VOID, ctypes.POINTER(_INT), ctypes.POINTER(_INT)]),
    "ps_seg_free": (None, [_VOID]),
}

Segment = tuple[str, int, int]  # word (or phone), first frame, end frame (exclusive), 10 ms frames


@functools.cache
def _library() -> ctypes.CDLL | None:
    """pocketsphinx's extension module as a C library, or None where it exports no C API."""
    try:
        from pocketsphinx import _pocketsphinx

        lib = ctypes.CDLL(_pocketsphinx.__file__)
        for name, (result, arguments) in _SIGNATURES.items():
            function = getattr(lib, name)
            function.restype, function.argtypes = result, arguments
    except (ImportError, OSError, AttributeError):
        return None
    return lib


def releases_gil() -> bool:
    return _library() is not None


def _c_config(lib: ctypes.CDLL, options: dict) -> int:
    """A C configuration holding every value of ``pocketsphinx.Config(**options)``, typed."""
    import pocketsphinx

    setters = {bool: lib.ps_config_set_bool, int: lib.ps_config_set_int, float: lib.ps_config_set_float,
               str: lib.ps_config_set_str}
    config = lib.ps_config_init(None)
    for name, value in pocketsphinx.Config(**options).items():
        key = name.encode()
        if value is None:  # unset (as lm=None: no word language model)
            lib.ps_config_set_str(config, key, None)
        elif not setters[type(value)](config, key, value.encode() if isinstance(value, str) else value):
            lib.ps_config_free(config)
            raise BackendUnavailable(f"pocketsphinx rejected the setting {name}={value!r}")
    return config


class PhoneDecoder:
    """A pocketsphinx decoder driven through the C API. One thread at a time per decoder."""

    def __init__(self, options: dict) -> None:
        self._lib = _library()
        config = _c_config(self._lib, options)
        self._ps = self._lib.ps_init(config)
        self._lib.ps_config_free(config)  # the decoder keeps its own reference
        if not self._ps:
            raise BackendUnavailable("pocketsphinx could not load its models; reinstall the pocketsphinx package")

    def decode(self, pcm: np.ndarray) -> list[Segment]:
        """Segments of one utterance of 16 kHz int16 audio, decoded as by a fresh decoder."""
        lib, ps = self._lib, self._ps
        samples = np.ascontiguousarray(pcm, dtype="<i2")
        lib.ps_reinit_feat(ps, None)  # forget the last utterance's noise and cepstral mean estimates
        if lib.ps_start_utt(ps) < 0:
            raise RuntimeError("pocketsphinx could not start an utterance")
        try:
            processed = lib.ps_process_raw(ps, samples.ctypes.data_as(ctypes.POINTER(ctypes.c_int16)),
                                           samples.size, 0, 1)
        finally:
            ended = lib.ps_end_utt(ps)  # always: an utterance left open would refuse the next start
        if processed < 0 or ended < 0:
            raise RuntimeError("pocketsphinx failed to decode the audio")
        return self._segments()

    def _segments(self) -> list[Segment]:
        lib, segments = self._lib, []
        first, last = _INT(), _INT()
        seg = lib.ps_seg_iter(self._ps)  # NULL when nothing was heard
        try:
            while seg:
                lib.ps_seg_frames(seg, ctypes.byref(first), ctypes.byref(last))
                segments.append((lib.ps_seg_word(seg).decode(), first.value, last.value + 1))
                seg = lib.ps_seg_next(seg)  # frees the iterator after the last segment
        finally:
            if seg:
                lib.ps_seg_free(seg)
        return segments

    def __del__(self) -> None:
        if getattr(self, "_ps", None):
            self._lib.ps_free(self._ps)
            self._ps = None


class _BindingDecoder:
    """pocketsphinx's own Python decoder behind PhoneDecoder's interface (holds the GIL)."""

    def __init__(self, options: dict) -> None:
        import pocketsphinx

        self._decoder = pocketsphinx.Decoder(**options)

    def decode(self, pcm: np.ndarray) -> list[Segment]:
        d = self._decoder
        d.reinit_feat()
        d.start_utt()
        d.process_raw(np.ascontiguousarray(pcm, dtype="<i2").tobytes(), full_utt=True)
        d.end_utt()
        return [(s.word, s.start_frame, s.end_frame + 1) for s in d.seg() or []]  # None: nothing heard


def new_decoder(**options: object) -> PhoneDecoder | _BindingDecoder:
    """A decoder built from pocketsphinx.Config(**options), releasing the GIL where it can."""
    return PhoneDecoder(options) if _library() is not None else _BindingDecoder(options)
