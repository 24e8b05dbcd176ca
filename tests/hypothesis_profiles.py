"""Hypothesis settings of the whole suite (loaded by tests/conftest.py before any test module)."""

from __future__ import annotations

import os

from hypothesis import settings

#: The suite gives the same result on every run: hypothesis draws the same examples each time (derandomize,
#: no example database replaying earlier failures). Counterexamples it ever found are kept as @example.
#: HYPOTHESIS_PROFILE=search runs a long random search instead (HYPOTHESIS_SEARCH_SCALE multiplies each
#: property's example count, default 20); what it finds becomes a new @example.
settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("search", derandomize=False, database=None, print_blob=True)
# Under CI=true always the deterministic profile, whatever else the environment says.
settings.load_profile("deterministic" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


def examples(n: int) -> int:
    """A property's example count: ``n``, times HYPOTHESIS_SEARCH_SCALE under the search profile."""
    if settings.default.derandomize:
        return n
    return n * int(os.environ.get("HYPOTHESIS_SEARCH_SCALE", "20"))
