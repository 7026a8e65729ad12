"""Hugging Face Jobs through huggingface_hub's own client: hardware and prices, submit, state, logs, cancel.

Every call goes through `call_with_retries` (backoff on 5xx/429/connection errors; messages carry no token). The
token is passed only in memory, and to a Job only as a *secret* (the Hub stores secrets encrypted and never
returns them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .client import DEFAULT_RETRY, RetryPolicy, call_with_retries

TERMINAL_STAGES = ("COMPLETED", "CANCELED", "ERROR", "DELETED")


@dataclass(frozen=True)
class Flavor:
    name: str
    pretty_name: str
    gpus: int                 # accelerators per machine (0: CPU only)
    gpu_model: Optional[str]
    usd_per_hour: float

    def label(self) -> str:
        return f"{self.name} · {self.pretty_name} · ${self.usd_per_hour:.2f}/h"


@dataclass(frozen=True)
class RemoteJobState:
    job_id: str
    stage: str                # SCHEDULING | RUNNING | COMPLETED | CANCELED | ERROR | DELETED
    message: Optional[str]
    url: str

    @property
    def terminal(self) -> bool:
        return self.stage in TERMINAL_STAGES


def _api(token: str) -> Any:
    from huggingface_hub import HfApi

    return HfApi(token=token)


def list_flavors(token: Optional[str], retry: RetryPolicy = DEFAULT_RETRY) -> list[Flavor]:
    """The hardware HF Jobs offers now, with its price (the Hub lists it per minute)."""
    hardware = call_with_retries(lambda: _api(token or "").list_jobs_hardware(token=token or False),
                                 "listing HF Jobs hardware", token, retry)
    out = []
    for h in hardware:
        per_hour = float(h.unit_cost_usd) * {"minute": 60, "second": 3600, "hour": 1}.get(h.unit_label, 60)
        acc = h.accelerator
        gpus = int(acc.quantity) if acc is not None and str(acc.quantity).isdigit() else 0
        out.append(Flavor(h.name, h.pretty_name, gpus, acc.model if acc else None, per_hour))
    return out


def flavor_problem(name: str, flavors: list[Flavor]) -> Optional[str]:
    if any(f.name == name for f in flavors):
        return None
    return (f"compute.flavor '{name}' is not HF Jobs hardware; choose one of: "
            + ", ".join(f.name for f in flavors))


def whoami(token: str, retry: RetryPolicy = DEFAULT_RETRY) -> str:
    return str(call_with_retries(lambda: _api(token).whoami(token=token)["name"], "checking the token", token, retry))


def submit(*, token: str, namespace: str, image: str, command: list[str], env: dict[str, str], flavor: str,
           timeout: str, labels: dict[str, str], network_group: Optional[str] = None,
           aliases: Optional[list[str]] = None, retry: RetryPolicy = DEFAULT_RETRY) -> RemoteJobState:
    """Start a Job; the token travels only as its HF_TOKEN secret."""
    def run() -> Any:
        return _api(token).run_job(image=image, command=command, env=env, secrets={"HF_TOKEN": token},
                                   flavor=flavor, timeout=timeout, labels=labels, namespace=namespace,
                                   network_group=network_group, network_aliases=aliases, token=token)

    # Not retried: a retry after a lost answer could start (and bill) the Job twice.
    info = call_with_retries(run, f"starting an HF Job on {flavor}", token, RetryPolicy(attempts=1))
    return RemoteJobState(info.id, str(info.status.stage), info.status.message, info.url)


def job_state(token: str, namespace: Optional[str], job_id: str,  # namespace None: the token's own
              retry: RetryPolicy = DEFAULT_RETRY) -> RemoteJobState:
    info = call_with_retries(lambda: _api(token).inspect_job(job_id=job_id, namespace=namespace, token=token),
                             f"reading HF Job {job_id}", token, retry)
    return RemoteJobState(info.id, str(info.status.stage), info.status.message, info.url)


def logs(token: str, namespace: str, job_id: str, retry: RetryPolicy = DEFAULT_RETRY) -> list[str]:
    """The Job's log lines so far (not following)."""
    return call_with_retries(lambda: list(_api(token).fetch_job_logs(job_id=job_id, namespace=namespace,
                                                                      follow=False, token=token)),
                             f"reading the logs of HF Job {job_id}", token, retry)


def cancel(token: str, namespace: str, job_id: str, retry: RetryPolicy = DEFAULT_RETRY) -> None:
    call_with_retries(lambda: _api(token).cancel_job(job_id=job_id, namespace=namespace, token=token),
                      f"cancelling HF Job {job_id}", token, retry)
