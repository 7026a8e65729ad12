"""Hub integration: push a trained adapter (optionally merged) with a model card, pull adapters back for chat.

    push_adapter(job_dir, repo_id=None, token=None, private=True, merged=False, endpoint=None) -> PushResult
    pull_adapter(repo_or_path, token=None) -> Path
    resolve_base_model(adapter_path) -> str

Tokens: the explicit `token` (the signed-in user's OAuth token in the app), else HF_TOKEN, else a stored
`hf auth login` token. A token is only ever passed to huggingface_hub in memory: never written to the job dir,
events, logs, exception text or the repo (pushed files are scanned for it before upload).
Errors are HubError subclasses (HubAuthError, HubNotFoundError, HubUnavailableError); a caller that trained
successfully and then fails to push marks the job "trained, not pushed" — the adapter stays on disk.
"""
from __future__ import annotations

from .client import (DEFAULT_RETRY, HubAuthError, HubError, HubNotFoundError, HubUnavailableError, RetryPolicy,
                     redact, resolve_token)
from .pull import pull_adapter, resolve_base_model
from .push import MERGED_SUFFIX, PushResult, check_repo_id, hub_repo_name, push_adapter

__all__ = ["DEFAULT_RETRY", "HubAuthError", "HubError", "HubNotFoundError", "HubUnavailableError", "MERGED_SUFFIX",
           "PushResult", "RetryPolicy", "check_repo_id", "hub_repo_name", "pull_adapter", "push_adapter", "redact",
           "resolve_base_model", "resolve_token"]
