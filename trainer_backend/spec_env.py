"""${VAR} in job specs: expanded for a person's own YAML file on the command line, refused in a spec a client sent.

The server's environment holds its secrets (HF_TOKEN, OAUTH_CLIENT_SECRET): a spec that arrives over the app (API,
UI, upload, REST) must never be able to name them.
"""
from __future__ import annotations

import os
import re
from typing import Any

from .errors import SpecError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any) -> Any:
    """Expand ${VAR} and ${VAR:-default} in every string of a YAML tree: only for a YAML file a person runs from
    the command line (load_spec), never for a spec a client sent (refuse_env_refs)."""
    if isinstance(value, str):
        def repl(m: re.Match) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            raise SpecError(f"environment variable {var} is not set (referenced as ${{{var}}})")
        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


def refuse_env_refs(value: Any, where: str = "") -> None:
    """A spec that came over the app (API, UI, upload) is never expanded: the server's environment holds its
    secrets (HF_TOKEN, OAUTH_CLIENT_SECRET). A ${VAR} in it is refused, naming the key, rather than kept literal
    (a literal '${HF_TOKEN}' would only fail later, less clearly)."""
    if isinstance(value, str):
        match = _ENV_REF.search(value)
        if match:
            raise SpecError(f"{where or 'spec'}: '{match.group(0)}' refers to an environment variable; the app never "
                            "expands ${...} in a spec it receives (only `python -m trainer_backend` does, for a YAML "
                            "file on your own machine). Write the value itself; for the Hub token, sign in or pass "
                            "your token to the client (gradio_client.Client(url, token=...))")
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_env_refs(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            refuse_env_refs(item, f"{where}[{index}]")
