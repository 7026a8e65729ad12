"""Error types shared across layers. Bottom of the package: imports nothing of ours."""
from __future__ import annotations


class SpecError(ValueError):
    """A spec that cannot be read or does not validate; the message says what to change."""
