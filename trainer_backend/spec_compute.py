"""Where a job trains: on this machine (`local`), or on pay-per-second Hugging Face Jobs hardware (`hf_jobs`).

The remote path itself lives in trainer_backend/remote/; this is only what a person chooses. The Train tab shows the
fields marked ui="compute" beside Start (ui/train_tab.py).
"""
from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import field_validator, model_validator

from .spec_base import _f, _Section

COMPUTE_BACKENDS = ("local", "hf_jobs")
# HF Jobs' own timeout syntax (huggingface_hub `run_job(timeout=...)`): seconds, or a number with s/m/h/d.
TIMEOUT_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_NODES = 8
_REMOTE = "compute.backend=hf_jobs"  # the Train tab shows the Job's own settings only when it is chosen


def timeout_seconds(timeout: str) -> int:
    m = TIMEOUT_PATTERN.match(timeout.strip())
    if not m:
        raise ValueError(f"'{timeout}' is not a duration: use seconds or a number with s, m, h or d (e.g. 90m, 3h)")
    return int(float(m[1]) * _UNIT_SECONDS[m[2]])


class ComputeSpec(_Section):
    backend: Literal["local", "hf_jobs"] = _f(
        "local", "Where to train: this machine, or Hugging Face Jobs (pay-per-second GPUs; needs a token).", "compute",
        label="Where to train")
    flavor: str = _f("a10g-small", "HF Jobs hardware (a10g-small, l4x1, a100-large, h100, ...): checked against the "
                                   "Hub's list; Plan shows the prices.", "compute", label="HF Jobs hardware",
                       when=_REMOTE)
    timeout: Optional[str] = _f(None, "Longest an HF Job may run (e.g. 90m, 3h): billing stops there. Required for "
                                      "hf_jobs.", "compute", label="Time limit", when=_REMOTE)
    namespace: Optional[str] = _f(None, "User or organisation that runs (and pays for) the Job; default: the "
                                        "token's user.", label="Billed to (namespace)", when=_REMOTE)
    image: Optional[str] = _f(None, "Docker image of the Job; default: this Space's own image when the app runs on a "
                                    "Space, otherwise required (an image built from this repo's Dockerfile).",
                             label="Docker image", when=_REMOTE)
    nodes: int = _f(1, "Machines to train on together (data-parallel over every GPU of each; the same flavor).",
                    "compute", ge=1, le=MAX_NODES, label="Machines", when=_REMOTE)

    @field_validator("timeout")
    @classmethod
    def _duration(cls, v: Optional[str]) -> Optional[str]:
        if v is None or not str(v).strip():
            return None
        v = str(v).strip()
        if timeout_seconds(v) < 60:
            raise ValueError(f"'{v}' is under a minute: a training Job needs longer (e.g. 30m)")
        return v

    @model_validator(mode="after")
    def _remote_needs(self) -> "ComputeSpec":
        if self.backend == "hf_jobs" and not self.timeout:
            raise ValueError("compute.backend=hf_jobs needs compute.timeout (e.g. 2h): the Job is billed until it "
                             "ends, and the timeout is where it surely ends")
        if self.backend == "local" and self.nodes > 1:
            raise ValueError("compute.nodes > 1 needs compute.backend=hf_jobs (one machine here)")
        return self
