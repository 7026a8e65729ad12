"""Secrets out of everything a person or a repo sees: one home for what counts as a secret and how it is removed.

Two shapes of secret: a value under a secret-looking key (`hub.token`, `api_key`, `OAUTH_CLIENT_SECRET`...) in a
spec, a config or a card's metadata; and an HF token written into text (a log line, an error message), matched
by its shape. Imports nothing of ours, so every layer can use it.
"""
from __future__ import annotations

import re
from typing import Any, Optional

SECRET_KEY = re.compile(r"token|secret|password|api_key", re.IGNORECASE)
# User access tokens look like hf_ + 30-40 letters/digits; OAuth tokens hf_oauth_...; both are matched.
TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9_]{20,}")
REDACTED = "hf_***"
MASK = "***"


def redact(text: str, *secrets: Optional[str]) -> str:
    """`text` with the given secrets and anything shaped like an HF token replaced by REDACTED."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return TOKEN_PATTERN.sub(REDACTED, text)


def without_secrets(node: Any, mask: Optional[str] = None) -> Any:
    """A copy of a JSON-like tree (dicts, lists, scalars) whose secret-keyed values are gone (`mask` None: the
    key is dropped) or replaced by `mask` (shown next to a refused spec, so the person sees the key was read), and
    whose strings have token-shaped text redacted. Anything else becomes its str(), redacted too."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if SECRET_KEY.search(str(key)):
                if mask is not None:
                    out[key] = mask
                continue
            out[key] = without_secrets(value, mask)
        return out
    if isinstance(node, (list, tuple)):
        return [without_secrets(value, mask) for value in node]
    if isinstance(node, str):
        return redact(node)
    return node if isinstance(node, (int, float, bool, type(None))) else redact(str(node))
