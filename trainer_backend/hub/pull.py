"""Get an adapter (or merged model) from the Hub or a local folder for chat, and find which base it needs."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from ..model_card import is_hub_id
from .client import DEFAULT_RETRY, HubError, HubNotFoundError, RetryPolicy, Token, call_with_retries

ADAPTER_CONFIG = "adapter_config.json"


def pull_adapter(repo_or_path: str, token: Token = None, revision: Optional[str] = None,
                 endpoint: Optional[str] = None, cache_dir: Optional[str | Path] = None,
                 retry: RetryPolicy = DEFAULT_RETRY) -> Path:
    """A local folder holding the adapter: `repo_or_path` itself when it is a folder, else a Hub snapshot
    (cached; served from the cache when the Hub is unreachable). Raises HubError with the fix on failure."""
    from huggingface_hub import snapshot_download

    local = Path(repo_or_path).expanduser()
    if local.is_dir():
        _check_model_folder(local, repo_or_path)
        return local
    if not is_hub_id(repo_or_path):
        raise HubNotFoundError(f"'{repo_or_path}' is neither a local folder nor a Hub repo id (user/name)")
    secret = token.get_secret_value() if hasattr(token, "get_secret_value") else token  # type: ignore[union-attr]
    # False: no token at all (a Space visitor or a member without one); None: HF_TOKEN, else the library's login
    tok = False if secret is False else (secret or os.environ.get("HF_TOKEN") or None)
    path = call_with_retries(
        lambda: snapshot_download(repo_or_path, revision=revision, token=tok, endpoint=endpoint,
                                  cache_dir=str(cache_dir) if cache_dir else None, ignore_patterns=["training/*"]),
        f"download {repo_or_path}", token=tok if isinstance(tok, str) else None, retry=retry)
    folder = Path(path)
    _check_model_folder(folder, repo_or_path)
    return folder


def _check_model_folder(folder: Path, name: str) -> None:
    if not (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file():
        raise HubError(f"{name} holds no {ADAPTER_CONFIG} (LoRA adapter) or config.json (full model)")


def resolve_base_model(adapter_path: str | Path) -> str:
    """The base model an adapter was trained on (`base_model_name_or_path` in adapter_config.json)."""
    config_path = Path(adapter_path) / ADAPTER_CONFIG
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HubError(f"{adapter_path} is not a LoRA adapter: no {ADAPTER_CONFIG}") from None
    except ValueError as exc:
        raise HubError(f"{config_path} is not valid JSON: {exc}") from None
    base = config.get("base_model_name_or_path")
    if not base:
        raise HubError(f"{config_path} does not name its base model (base_model_name_or_path is empty)")
    return str(base)
