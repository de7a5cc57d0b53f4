"""Temporal filters for landmark streams."""

from __future__ import annotations

import math

import numpy as np


class OneEuroFilter:
    """The One Euro filter (Casiez et al., CHI 2012), elementwise on arrays.

    A low-pass filter whose cut-off rises with speed: still points lose their jitter,
    moving points keep up. ``min_cutoff_hz`` sets the smoothing at rest (lower = smoother),
    ``beta`` how fast the cut-off rises with speed, in Hz per (unit/s) (higher = less lag),
    ``d_cutoff_hz`` the smoothing of the speed estimate. Speeds are in input units per second.
    """

    def __init__(self, min_cutoff_hz: float = 1.0, beta: float = 0.05, d_cutoff_hz: float = 1.0):
        self.min_cutoff_hz = min_cutoff_hz
        self.beta = beta
        self.d_cutoff_hz = d_cutoff_hz
        self._prev: np.ndarray | None = None
        self._prev_speed: np.ndarray | None = None
        self._prev_t: float | None = None

    @staticmethod
    def _alpha(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff_hz)
        return 1.0 / (1.0 + tau / dt_s)

    def __call__(self, value: np.ndarray, t_s: float) -> np.ndarray:
        value = np.asarray(value, np.float64)
        if self._prev is None or self._prev_t is None or t_s <= self._prev_t:
            self._prev, self._prev_speed, self._prev_t = value, np.zeros_like(value), t_s
            return value
        dt = t_s - self._prev_t
        speed = (value - self._prev) / dt
        a_d = self._alpha(self.d_cutoff_hz, dt)
        speed = a_d * speed + (1 - a_d) * self._prev_speed
        a = self._alpha(self.min_cutoff_hz + self.beta * np.abs(speed), dt)
        out = a * value + (1 - a) * self._prev
        self._prev, self._prev_speed, self._prev_t = out, speed, t_s
        return out
