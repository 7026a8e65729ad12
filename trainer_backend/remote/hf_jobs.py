"""The HF Job(s) of one LoRA Studio job: which image, a flavor check, one Job per node (in one network group, rank 0
claiming the rendezvous alias), the stop file, and stopping every node together."""
from __future__ import annotations

import json
import os
import re
from typing import Optional

from ..hub import jobs_api, sync as hubsync
from ..hub.client import HubNotFoundError, call_with_retries
from ..spec_compute import ComputeSpec
from ..hub.jobs_api import RemoteJobState, cancel, job_state, whoami  # noqa: F401 (re-exported)

JOB_MODULE = "trainer_backend.remote.job"  # what every Job runs (inside the image)
SYNC_REPO_ENV = "LORA_STUDIO_SYNC_REPO"
NODE_RANK_ENV, NODES_ENV, MASTER_ENV = "LORA_STUDIO_NODE_RANK", "LORA_STUDIO_NODES", "LORA_STUDIO_MASTER_ALIAS"
MASTER_PORT_ENV = "LORA_STUDIO_MASTER_PORT"
MASTER_ADDR_ENV = "LORA_STUDIO_MASTER_ADDR"  # overrides the rendezvous host (debugging; the loopback Hub's tests)
MASTER_ALIAS = "rank0"


def image_for(compute: ComputeSpec) -> str:
    """compute.image, else this Space's own image (the Job then runs exactly this app's code)."""
    if compute.image:
        return compute.image
    space = os.environ.get("SPACE_ID")
    if space:
        return f"hf.co/spaces/{space}"
    raise ValueError("compute.image is needed outside a Space: build this repo's Dockerfile, push it "
                     "(e.g. docker build -t you/lora-studio . && docker push you/lora-studio) and set "
                     "compute.image: you/lora-studio")


def check_flavor(token: str, flavor: str) -> jobs_api.Flavor:
    flavors = jobs_api.list_flavors(token)
    problem = jobs_api.flavor_problem(flavor, flavors)
    if problem:
        raise ValueError(problem)
    return next(f for f in flavors if f.name == flavor)


def _endpoint_env() -> dict[str, str]:
    from huggingface_hub import constants

    default = "https://huggingface.co"
    return {} if constants.ENDPOINT.rstrip("/") == default else {"HF_ENDPOINT": constants.ENDPOINT}


def start(token: str, namespace: str, image: str, compute: ComputeSpec, repo: str,
          job_id: str) -> list[RemoteJobState]:
    """Start compute.nodes Jobs; if one cannot start, the ones already started are cancelled."""
    env = {SYNC_REPO_ENV: repo, **_endpoint_env()}
    labels = {"lora-studio-job": job_id}
    command = ["python", "-m", JOB_MODULE, "--repo", repo]
    common = dict(token=token, namespace=namespace, image=image, command=command, flavor=compute.flavor,
                  timeout=str(compute.timeout))
    if compute.nodes == 1:
        return [jobs_api.submit(env=env, labels=labels, **common)]  # type: ignore[arg-type]
    group = re.sub(r"[^a-z0-9-]", "-", f"lora-studio-{job_id}".lower())[:46]
    port = 29400 + int.from_bytes(job_id.encode()[-2:], "big") % 500  # the same for every node of the job
    started: list[RemoteJobState] = []
    try:
        for rank in range(compute.nodes):
            node_env = {**env, NODE_RANK_ENV: str(rank), NODES_ENV: str(compute.nodes), MASTER_ENV: MASTER_ALIAS,
                        MASTER_PORT_ENV: str(port)}
            started.append(jobs_api.submit(env=node_env, labels={**labels, "node": str(rank)}, network_group=group,
                                           aliases=[MASTER_ALIAS] if rank == 0 else None,
                                           **common))  # type: ignore[arg-type]
    except Exception:
        cancel_all(token, namespace, [s.job_id for s in started])
        raise
    return started


def cancel_all(token: str, namespace: str, job_ids: list[str]) -> None:
    for job_id in job_ids:
        try:
            cancel(token, namespace, job_id)
        except Exception:  # noqa: BLE001 - one node's answer must not keep the others running
            continue


def job_logs(token: str, namespace: str, job_id: str) -> list[str]:
    return jobs_api.logs(token, namespace, job_id)


def clear_stop(repo: str, token: str) -> None:
    from huggingface_hub import HfApi

    try:
        call_with_retries(lambda: HfApi(token=token).delete_file(hubsync.STOP_FILE, repo, commit_message="new run"),
                          f"clearing the stop request of {repo}", token)
    except HubNotFoundError:
        pass


def stop_request(repo: str, token: str) -> Optional[dict]:
    """The job repo's stop request ({"reason": ..., "note": ...}: a sweep's pruning says why), or None."""
    raw = hubsync.read_file(repo, hubsync.STOP_FILE, token)
    if raw is None:
        return None
    try:
        request = json.loads(raw)
    except ValueError:
        return {}
    return request if isinstance(request, dict) else {}


def node_rank() -> tuple[int, int, Optional[str], int]:
    """Inside a Job: (rank, nodes, rendezvous host, port) from the environment its runner gave it."""
    nodes = int(os.environ.get(NODES_ENV, "1"))
    host = None
    if nodes > 1:
        host = os.environ.get(MASTER_ADDR_ENV) or \
            os.environ.get("HF_NETWORK_GROUP_PREFIX", "") + os.environ.get(MASTER_ENV, MASTER_ALIAS)
    return int(os.environ.get(NODE_RANK_ENV, "0")), nodes, host, int(os.environ.get(MASTER_PORT_ENV, "29500"))


def preflight(compute: ComputeSpec, token: object = None) -> list[str]:
    """What stops this job from running on HF Jobs, found before anything is uploaded or billed."""
    from ..hub.client import HubError, resolve_token

    try:
        tok = resolve_token(token)  # type: ignore[arg-type]
    except HubError as exc:
        return [f"HF Jobs needs a token with write access: {exc}"]
    problems = []
    try:
        image_for(compute)
    except ValueError as exc:
        problems.append(str(exc))
    try:
        flavor = check_flavor(tok, compute.flavor)
        if compute.nodes > 1 and flavor.gpus == 0:
            problems.append(f"compute.nodes={compute.nodes} needs a GPU flavor ({compute.flavor} has no GPU)")
    except ValueError as exc:
        problems.append(str(exc))
    except HubError as exc:
        problems.append(f"could not read the HF Jobs hardware list: {exc}")
    return problems


def cost_markdown(compute: ComputeSpec, estimated_seconds: Optional[float], token: object = None) -> str:
    """The HF Jobs price of this plan: flavor price x estimated time x nodes, the most the timeout allows, and the
    other hardware with its price (live from the Hub)."""
    from ..hub.client import HubError, resolve_token
    from ..spec_compute import timeout_seconds

    try:
        try:
            tok: Optional[str] = resolve_token(token)  # type: ignore[arg-type]
        except HubError:
            tok = None
        flavors = jobs_api.list_flavors(tok)
    except HubError as exc:
        return f"\n\n**HF Jobs**: prices unavailable ({exc})"
    chosen = next((f for f in flavors if f.name == compute.flavor), None)
    if chosen is None:
        return f"\n\n**HF Jobs**: {jobs_api.flavor_problem(compute.flavor, flavors)}"
    rate = chosen.usd_per_hour * compute.nodes
    nodes = f" × {compute.nodes} nodes" if compute.nodes > 1 else ""
    lines = [f"\n\n**HF Jobs**: {chosen.pretty_name} (`{chosen.name}`, ${chosen.usd_per_hour:.2f}/h){nodes}"]
    if estimated_seconds is not None:
        lines.append(f"- estimated cost: **${rate * estimated_seconds / 3600:.2f}** for ~{max(estimated_seconds / 60, 1):.0f} "
                     "min of training (plus a few minutes to start)")
    if compute.timeout:
        most = rate * timeout_seconds(compute.timeout) / 3600
        lines.append(f"- at most **${most:.2f}**: the Job is stopped at its {compute.timeout} timeout")
    others = ", ".join(f"`{f.name}` ${f.usd_per_hour:.2f}/h" for f in flavors if f.gpus and f.name != chosen.name)
    if others:
        lines.append(f"- other hardware: {others}")
    return "\n".join(lines)
