"""What an HF Job runs: the spec rewritten so that it refers only to Hub resources.

Local data files go to a private dataset repo of the user (`<ns>/lora-studio-data-<content hash>`: the same files
are uploaded once), a local base model folder to a private model repo (`<ns>/lora-studio-model-<hash>`); a Hub
dataset or model id is passed through. The Job's wrapper (remote/job.py) downloads staged data back into files,
so validation inside the Job reads the same file names and rows as the check here did.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..data.fingerprint import file_digest
from ..hub.client import DEFAULT_RETRY, RetryPolicy, call_with_retries
from ..spec import JobSpec
from ..spec_compute import ComputeSpec

DATA_PREFIX, MODEL_PREFIX = "lora-studio-data-", "lora-studio-model-"
STAGED_DATA, STAGED_VALID = "data", "valid"  # folders in the dataset repo


@dataclass
class Staged:
    """Where the local pieces went; written to the job repo (hub/sync.py REMOTE_FILE) for the Job's wrapper."""
    data_repo: Optional[str] = None
    data_path: Optional[str] = None      # data.path inside the dataset repo snapshot (comma-separated files)
    valid_path: Optional[str] = None     # data.valid_split when it was a local file
    model_repo: Optional[str] = None
    uploaded: list[str] = field(default_factory=list)  # repos created or filled by this staging

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v}


def _local_files(path: str) -> Optional[list[Path]]:
    parts = [Path(p.strip()).expanduser() for p in path.split(",") if p.strip()]
    return parts if parts and all(p.exists() for p in parts) else None


def _digest(paths: list[tuple[str, Path]]) -> str:
    h = hashlib.sha256()
    for name, p in sorted(paths):
        h.update(f"{name}\0{file_digest(p)}\n".encode())
    return h.hexdigest()[:16]


def _files_of(folder: Path) -> list[tuple[str, Path]]:
    return [(p.relative_to(folder).as_posix(), p) for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)]


def _api(token: str) -> Any:
    from huggingface_hub import HfApi

    return HfApi(token=token)


def _upload(repo_id: str, repo_type: str, files: list[tuple[str, Path]], token: str, retry: RetryPolicy) -> bool:
    """Create the private repo and upload `files` unless it already holds them (same content hash: same name)."""
    from huggingface_hub import CommitOperationAdd

    api = _api(token)
    exists = call_with_retries(lambda: api.repo_exists(repo_id, repo_type=repo_type, token=token),
                               f"looking up {repo_id}", token, retry)
    if exists and set(call_with_retries(lambda: api.list_repo_files(repo_id, repo_type=repo_type, token=token),
                                        f"listing {repo_id}", token, retry)) >= {n for n, _ in files}:
        return False
    call_with_retries(lambda: api.create_repo(repo_id, repo_type=repo_type, private=True, exist_ok=True),
                      f"creating {repo_id}", token, retry)
    ops = [CommitOperationAdd(name, str(p)) for name, p in files]
    call_with_retries(lambda: api.create_commit(repo_id, ops, repo_type=repo_type,
                                                commit_message="LoRA Studio: staged for an HF Job"),
                      f"uploading to {repo_id}", token, retry)
    return True


def stage(spec: JobSpec, namespace: str, sync_repo: str, token: str,
          retry: RetryPolicy = DEFAULT_RETRY) -> tuple[JobSpec, Staged]:
    """(the spec the Job runs, what was staged). The Job's spec trains 'locally' inside the Job, kept in sync_repo."""
    remote = spec.model_copy(deep=True)
    staged = Staged()
    data_files = _local_files(spec.data.path)
    valid = spec.data.valid_split
    valid_file = Path(valid).expanduser() if valid and valid != "auto" and Path(valid).expanduser().is_file() else None
    if data_files is not None:
        files: list[tuple[str, Path]] = []
        if len(data_files) == 1 and data_files[0].is_dir():
            files += [(f"{STAGED_DATA}/{n}", p) for n, p in _files_of(data_files[0])]
            staged.data_path = STAGED_DATA
        else:
            names = [f"{STAGED_DATA}/{p.name}" for p in data_files]
            if len(set(names)) != len(names):
                raise ValueError("data.path lists two files with the same name; rename one before training on HF Jobs")
            files += list(zip(names, data_files))
            staged.data_path = ",".join(names)
        if valid_file is not None:
            staged.valid_path = f"{STAGED_VALID}/{valid_file.name}"
            files.append((staged.valid_path, valid_file))
        staged.data_repo = f"{namespace}/{DATA_PREFIX}{_digest(files)}"
        if _upload(staged.data_repo, "dataset", files, token, retry):
            staged.uploaded.append(staged.data_repo)
        remote.data.path = staged.data_repo
        if valid_file is not None:
            remote.data.valid_split = staged.valid_path
    base = Path(spec.model.base_model).expanduser()
    if base.is_dir():
        model_files = _files_of(base)
        staged.model_repo = f"{namespace}/{MODEL_PREFIX}{_digest(model_files)}"
        if _upload(staged.model_repo, "model", model_files, token, retry):
            staged.uploaded.append(staged.model_repo)
        remote.model.base_model = staged.model_repo
    remote.output_dir = None
    remote.compute = ComputeSpec()          # inside the Job, training is local to it
    remote.hub.sync, remote.hub.sync_repo = True, sync_repo
    return remote, staged


def unstage(remote: JobSpec, staged: dict[str, Any], workdir: Path, token: str,
            retry: RetryPolicy = DEFAULT_RETRY) -> JobSpec:
    """Inside the Job: staged data downloaded into workdir, the spec pointed at those files."""
    spec = remote.model_copy(deep=True)
    if staged.get("data_repo"):
        root = workdir / "staged-data"
        call_with_retries(lambda: _api(token).snapshot_download(staged["data_repo"], repo_type="dataset",
                                                                local_dir=str(root), token=token),
                          f"downloading {staged['data_repo']}", token, retry)
        spec.data.path = ",".join(str(root / p) for p in staged["data_path"].split(","))
        if staged.get("valid_path"):
            spec.data.valid_split = str(root / staged["valid_path"])
    return spec
