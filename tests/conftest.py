"""Suite-wide settings. Fixtures for one area live beside its tests."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Property tests run often and must stay fast; `HYPOTHESIS_PROFILE=deep` digs further by hand.
settings.register_profile(
    "default",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("deep", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
