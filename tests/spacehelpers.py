"""The app started the way a Space starts it, on loopback, with an owner's jobs already in its store.

Used by tests/space/ (the Space its attack suites share). Identities come from a
loopback Hub (hub_server.py): the owner, a signed-in stranger and an allowed member each have a token the Hub
knows; a forged token is one it does not.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import httpx
import psutil

from apphelpers import AppServer, processes_mentioning

OWNER, STRANGER, MEMBER = "owner", "mallory", "carol"
TOKENS = {"hf_owner_token_0000000000": OWNER, "hf_stranger_token_000000000": STRANGER,
          "hf_member_token_0000000000": MEMBER}
TOKEN_OF = {user: token for token, user in TOKENS.items()}
FORGED_TOKEN = "hf_forged_token_00000000000"
# The server's secrets, set to values that appear nowhere else, so a test can search every output for them. The
# Space's HF_TOKEN is its owner's token, as on a real Space.
SECRETS = {"HF_TOKEN": TOKEN_OF[OWNER], "OAUTH_CLIENT_SECRET": "oauth-client-secret-5f0c2a9e71d4",
           "LORA_STUDIO_API_KEY": "sk-server-api-key-8e1b7d3c90aa"}


def space_env(hub_url: str, public_adapters: str) -> dict[str, str]:
    """What a Space sets (SYSTEM, SPACE_ID, SPACE_AUTHOR_NAME, OAuth), pointed at the loopback Hub."""
    return {"SYSTEM": "spaces", "SPACE_ID": f"{OWNER}/studio", "SPACE_AUTHOR_NAME": OWNER,
            "SPACE_HOST": "owner-studio.hf.space", "OAUTH_CLIENT_ID": "loopback-client", **SECRETS,
            "OAUTH_SCOPES": "openid profile", "LORA_STUDIO_RESTORE_FROM_HUB": "0",  # no synced jobs to restore
            "OPENID_PROVIDER_URL": hub_url, "HF_ENDPOINT": hub_url, "HF_HUB_OFFLINE": "0",
            "LORA_STUDIO_ALLOWED_USERS": MEMBER, "LORA_STUDIO_PUBLIC_ADAPTERS": public_adapters,
            "LORA_STUDIO_DEMO_MAX_NEW_TOKENS": "8", "LORA_STUDIO_DEMO_REQUESTS_PER_MINUTE": "4",
            "LORA_STUDIO_DEMO_MAX_CONCURRENT": "1",
            "LORA_STUDIO_MAX_UPLOAD": "1mb",
            # a member may hold 256 KiB of uploads (ui/http_gate.py): one 300 KB file is over it, and the few
            # small files the other tests upload stay far under it
            "LORA_STUDIO_UPLOAD_QUOTA": "256kb"}


def train_owner_jobs(data_dir: Path, model: Path, data_file: Path, work: Path) -> tuple[str, str]:
    """Before the Space starts: one finished job (to be shown in the public demo) and one private job whose
    data was invalid. Returns (public_job_id, private_job_id)."""
    import yaml

    from trainer_backend.jobs import JobManager

    spec = {"project_name": "owner-public", "model": {"base_model": str(model)},
            "data": {"path": str(data_file), "chat_template": "chatml", "max_rows": 24, "valid_split": "auto"},
            "lengths": {"block_size": 128},
            "training": {"max_steps": 2, "batch_size": 2, "gradient_accumulation": 1, "logging_steps": 1,
                         "save_strategy": "no", "eval_strategy": "no"}}
    (work / "public.yaml").write_text(yaml.safe_dump(spec))
    bad = work / "secret-rows.jsonl"
    bad.write_text('{"instruction": "owner secret question", "output": "owner secret answer"}\nnot json\n')
    (work / "private.yaml").write_text(yaml.safe_dump({**spec, "project_name": "owner-private",
                                                      "data": {**spec["data"], "path": str(bad)}}))
    manager = JobManager(data_dir)
    public = manager.submit(str(work / "public.yaml"), owner=OWNER)
    private = manager.submit(str(work / "private.yaml"), owner=OWNER)
    deadline = time.monotonic() + 240
    while manager.get(public.id).status not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert manager.get(public.id).status == "succeeded", manager.describe(public.id)
    return public.id, private.id


@dataclass
class StoreState:
    jobs: list[dict]
    files: dict[str, tuple[int, int]]
    trainers: list[int]


def store_state(data_dir: Path) -> StoreState:
    """What an attack must not change: the job rows, every file of the data dir, training processes."""
    from trainer_backend.jobs import JobStore

    rows = [{k: v for k, v in vars(j).items() if k not in ("updated_at",)} for j in JobStore(data_dir).list()]
    files = {}
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and not path.name.endswith(("-wal", "-shm", ".db", ".lock", "supervisor.log")):
            st = path.stat()
            files[str(path.relative_to(data_dir))] = (st.st_size, st.st_mtime_ns)
    # `python -m trainer_backend train <spec>` (training/launch.py), not the supervisor, whose module name only
    # contains "train" and which exits by itself a while after its last job
    trainers = sorted(p.pid for p in processes_mentioning(str(data_dir)) if "train" in (p.info.get("cmdline") or []))
    return StoreState(json.loads(json.dumps(rows, default=str)), files, trainers)


def gradio_temp_dir(data_dir: Path) -> Path:
    """Where the app started by start_space keeps Gradio's uploads and outputs (GRADIO_TEMP_DIR)."""
    return data_dir.parent / "gradio-tmp"


def start_space(data_dir: Path, hub_url: str, public_adapters: str) -> AppServer:
    return AppServer(data_dir, env={**space_env(hub_url, public_adapters),
                                    "GRADIO_TEMP_DIR": str(gradio_temp_dir(data_dir))})


def client_as(url: str, token: Optional[str] = None, headers: Optional[dict[str, str]] = None) -> Any:
    from gradio_client import Client

    return Client(url, token=token, headers=headers, verbose=False, download_files=False)


def refusal_of(call: Callable[[], Any]) -> str:
    """The message a refused call carries (a successful call is a failed attack)."""
    from gradio_client.exceptions import AppError

    try:
        result = call()
    except AppError as exc:
        return str(exc)
    except ValueError as exc:  # gradio_client raises ValueError for some refused uploads / HTTP errors
        return str(exc)
    except httpx.HTTPStatusError as exc:  # an upload the Space refused (ui/http_gate.py): status and message
        return f"HTTP {exc.response.status_code}: {exc.response.text}"
    raise AssertionError(f"the call was not refused; it returned {str(result)[:500]}")


def pids_alive(pids: list[int]) -> list[int]:
    return [p for p in pids if psutil.pid_exists(p)]


__all__ = ["AppServer", "FORGED_TOKEN", "MEMBER", "OWNER", "SECRETS", "STRANGER", "TOKENS", "TOKEN_OF", "StoreState",
           "client_as", "gradio_temp_dir", "os", "refusal_of", "start_space", "store_state", "train_owner_jobs"]
