from __future__ import annotations

import numpy as np

from facecli.filters import OneEuroFilter


def test_one_euro_removes_jitter_at_rest_and_follows_motion() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(200) / 30.0
    still = 100 + rng.normal(0, 1.0, 200)
    filt = OneEuroFilter(min_cutoff_hz=1.0, beta=0.05)
    out = np.array([filt(np.array([v]), ti)[0] for v, ti in zip(still, t)])
    assert out[50:].std() < 0.4 * still[50:].std()

    ramp = 300.0 * t  # 300 px/s: fast head motion
    filt = OneEuroFilter(min_cutoff_hz=1.0, beta=0.05)
    out = np.array([filt(np.array([v]), ti)[0] for v, ti in zip(ramp, t)])
    assert np.abs(out[30:] - ramp[30:]).max() < 15, "lag under 0.05 s at 300 px/s"
