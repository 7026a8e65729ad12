"""What the UI and the named API do, without Gradio: parse a client's spec safely, validate, report, run jobs.

Every public method takes plain values (YAML/JSON text, file paths, ids) and returns JSON-ready data, so the
same code serves the browser, `gradio_client` and the tests. Access checks happen in ui/api.py, which knows
the caller; nothing returned here ever contains a token.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..access import Identity, current_caller, hub_identity_label, hub_token, is_member, on_space
from ..hub.client import HubAuthError
from ..data.issues import DataError, IssueCollector
from ..generation import GenerationSettings
from ..job_files import has_trained_model
from ..job_status import TERMINAL, JobStatus
from ..public_demo import demo_hub_token
from ..spec import JobSpec, SpecError, parse_spec
from ..uploads import (EXAMPLES_DIR, check_client_path, load_client_yaml, sanitize_client_spec, model_folder_hint,
                       scrub_paths, store_upload, user_file_name, user_upload_dir)
from ..jobs.store import stored_spec
from .job_view import allowed_actions, samples_per_step, trainer_of
from .streams import stream_deadline

TINY_DEMO = "tiny-demo"
EVENTS_STREAM_MAX_SECONDS = 3600.0  # a /job_events stream ends after this; the client reconnects
# Pollers of one job within this many seconds share one answer: 20 clients polling every second then cost
# about two reads of the job store per second instead of twenty, while the job trains on the same cores.
STATUS_CACHE_SECONDS = 0.5


def example_datasets() -> dict[str, str]:
    """Sample datasets shipped in examples/ (name -> path) for the offline demo."""
    return {p.name: str(p) for p in sorted(EXAMPLES_DIR.glob("*.jsonl"))}


class StudioService:
    def __init__(self, manager: Any):
        self.jobs = manager
        self.data_dir: Path = manager.data_dir
        self._tiny_lock = threading.Lock()
        self._status_cache: dict[tuple[str, bool], tuple[float, dict]] = {}
        self._status_lock = threading.Lock()
        self._upload_names: dict[str, str] = {}  # stored upload -> the file name the user sent it under

    # ---- specs from clients ---------------------------------------------------------------------------
    def tiny_demo_model(self) -> Path:
        """Built once per data dir, then reused (a few seconds, no download)."""
        from ..tiny_model import build_tiny_model

        corpus = []
        for path in example_datasets().values():
            corpus += [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        with self._tiny_lock:
            return build_tiny_model(self.data_dir / "models" / TINY_DEMO, corpus=corpus * 3, vocab_size=2048)

    def parse_client_spec(self, spec_text: str, dataset_file: Optional[str] = None) -> tuple[JobSpec, list[str]]:
        """YAML or JSON from a client -> a JobSpec that only touches this app's (and this caller's) folders."""
        raw = load_client_yaml(spec_text)
        for section in ("data", "model"):
            if not isinstance(raw.setdefault(section, {}), dict):
                raise SpecError(f"spec: '{section}' must be a section (a mapping of keys to values)")
        if dataset_file:
            raw["data"]["path"] = str(self.store_dataset(dataset_file))
        model = raw["model"]
        if model.get("base_model") == TINY_DEMO:
            model["base_model"] = str(self.tiny_demo_model())
        raw.pop("output_dir", None)
        spec, warnings = parse_spec(raw, "spec")
        if spec.model.trust_remote_code and not is_member(current_caller()):
            raise SpecError("model.trust_remote_code runs code from the model repo on this server; only the "
                            "Space's owner and members may turn it on")
        if any(r.type == "python" for r in spec.grpo.rewards) and not is_member(current_caller()):
            raise SpecError("a python reward runs its file's code on this server; only the Space's owner and "
                            "members may use one (the built-in rewards need no code)")
        from .evaluation_service import confine  # a judge endpoint: the owner's alone; task folders: confined
        spec = sanitize_client_spec(spec, self.data_dir, self.client_roots())
        return spec.model_copy(update={"evaluation": confine(spec.evaluation, self)}), warnings

    def client_roots(self) -> list[Path]:
        """Where a client's spec may point: its own uploads and the bundled examples (on a Space), or anything
        in the data dir (locally: one user)."""
        if not on_space():
            return [self.data_dir, EXAMPLES_DIR]
        return [user_upload_dir(self.data_dir, current_caller().username), EXAMPLES_DIR]

    def client_path(self, value: str, what: str) -> str:
        """Every local path a client names in an event (preview, report, validate, plan, start, evaluate, a
        loaded config) passes here: inside the caller's roots or an upload they sent themselves; a Hub id passes
        (it is read with the caller's own token: access.hub_token). UnsafePath otherwise."""
        return check_client_path(value, self.client_roots(), what, own_uploads=True)

    def store_dataset(self, path: str) -> Path:
        """An uploaded dataset file (Gradio's FileData), copied into the caller's upload folder; a file already
        inside their roots is used where it is. On a Space it must be the caller's own upload (locally the one
        person at the machine hands the app any file of theirs)."""
        src = Path(self.client_path(str(path), "dataset file")) if on_space() else Path(path).resolve()
        if any(src.is_relative_to(root.resolve()) for root in self.client_roots()):
            return src
        stored = store_upload(src, user_upload_dir(self.data_dir, current_caller().username), src.name)
        if len(self._upload_names) > 1024:
            self._upload_names.clear()
        self._upload_names[str(stored)] = src.name
        return stored

    def calm(self, value: Any, dataset_file: Optional[str] = None) -> Any:
        """`value` (a message or JSON-ready data) with server paths replaced by the names the user knows
        (uploads.scrub_paths): an upload's own file name, a sample's name."""
        names = dict(self._upload_names)
        if dataset_file:
            names[str(dataset_file)] = names[str(Path(dataset_file).resolve())] = Path(dataset_file).name
        return scrub_paths(value, self.data_dir, names)

    def file_name(self, path: str) -> str:
        """The name the user knows a data file by (in a data problem's summary line)."""
        return self._upload_names.get(path) or user_file_name(path, self.data_dir) or path

    def model_fit(self, base_model: str, quantization: str) -> str:
        """Whether a base model fits this machine (markdown), read from its weights' metadata: a local folder only
        inside the caller's roots or the app's models folder (like model.base_model in a spec), else a Hub id read
        with the caller's own token."""
        from ..model_info import estimate_fit

        return self.calm(estimate_fit(self._model_folder(base_model), quantization or "none").markdown())

    def _model_folder(self, base_model: str) -> str:
        """A base model the client named: a Hub id, or a local folder only inside their roots or the app's models
        folder — the very refusal Check data would give (UnsafePath, naming where models may live)."""
        return check_client_path(base_model, [*self.client_roots(), self.data_dir / "models"], "model.base_model",
                                 hint=model_folder_hint(self.data_dir))

    def preset(self, name: str, trainer: str, base_model: str) -> Any:
        """Settings a preset proposes (training/presets.py) for this model on this machine: a PresetChoice."""
        from ..model_info import estimate_fit
        from ..training.presets import choose

        if base_model == TINY_DEMO:
            return choose(name, trainer, None, tiny=True)
        try:
            fit = estimate_fit(self._model_folder(base_model), "none")
        except ValueError:  # a folder this caller may not name: Check data says so; the preset needs no size
            fit = None
        return choose(name, trainer, fit)

    def read_client_config(self, path: str) -> str:
        """The text of a config the client uploaded (Load config), or a shipped example."""
        return Path(self.client_path(str(path), "config file")).read_text(encoding="utf-8")

    # ---- data -------------------------------------------------------------------------------------------
    def preview(self, path: str, split: str = "train", config_name: Optional[str] = None,
                rows: int = 20) -> dict[str, Any]:
        """First rows, columns and the detected format of a dataset (no tokenizer needed)."""
        from ..data.detection import detect_format
        from ..data.issues import RowError
        from ..data.loading import load_split
        from ..spec import ColumnMapping

        issues = IssueCollector(20)
        raw = load_split(self.client_path(path, "dataset"), split or "train", issues, config_name)
        errors = self.calm(DataError(issues.errors, issues.dropped_errors, issues.overflow).lines(self.file_name))
        if raw is None or (issues.errors and not raw.rows):
            return {"columns": [], "rows": [], "errors": errors if issues.errors else []}
        try:
            det = detect_format(raw.columns, raw.rows[:50], "auto", ColumnMapping()).to_dict()
        except RowError as exc:
            det = {"format": None, "reason": exc.message, "mapping": {}}
        table = [[_cell(r.get(c)) for c in raw.columns] for r in raw.rows[:rows]]
        return {"columns": raw.columns, "rows": table, "total_rows": len(raw.rows), "detected": det,
                "errors": errors if issues.errors else []}

    def validate(self, spec_text: str, dataset_file: Optional[str] = None) -> dict[str, Any]:
        """Check the spec and every data row; the dataset report when valid, every problem when not."""
        from ..training.run import prepare_job
        from ..training.trainers import TrainerNotAvailable

        try:
            spec, warnings = self.parse_client_spec(spec_text, dataset_file)
            _, prepared = prepare_job(spec.model_copy(deep=True))  # the YAML shown is the spec as written
        except DataError as exc:  # one line per distinct problem, with its rows (issues.summary_lines)
            return {"ok": False, "errors": self.calm(exc.lines(self.file_name), dataset_file), "warnings": []}
        except (SpecError, TrainerNotAvailable, ValueError, OSError) as exc:
            return {"ok": False, "errors": [self.calm(str(exc), dataset_file)], "warnings": []}
        report = self.calm(prepared.report(), dataset_file)
        return {"ok": True, "errors": [], "warnings": self.calm(warnings, dataset_file) + report["warnings"],
                "report": report, "yaml": spec.to_yaml()}

    def plan(self, spec_text: str, dataset_file: Optional[str] = None, probe_steps: int = 0,
             hardware: Optional[str] = None) -> dict[str, Any]:
        """The job plan (training/plan.py): parameters, memory by part, tokens, steps, time, cost."""
        from ..training.plan import plan_job
        from ..training.trainers import TrainerNotAvailable

        try:
            spec, _ = self.parse_client_spec(spec_text, dataset_file)
            remote = spec.compute.backend == "hf_jobs"
            plan = plan_job(spec, hardware=hardware or (spec.compute.flavor if remote else None),
                            probe_steps=0 if remote else probe_steps)  # a probe here says nothing of the Job's GPU
        except DataError as exc:
            return {"ok": False, "errors": self.calm(exc.lines(self.file_name), dataset_file)}
        except (SpecError, TrainerNotAvailable, ValueError, OSError) as exc:
            return {"ok": False, "errors": [self.calm(str(exc), dataset_file)]}
        markdown = self.calm(plan.markdown(), dataset_file)
        if remote:
            from ..remote.hf_jobs import cost_markdown

            markdown += cost_markdown(spec.compute, plan.time_seconds.value)
        return {"ok": True, "plan": plan.to_dict(), "markdown": markdown}

    # ---- jobs ------------------------------------------------------------------------------------------
    def start(self, spec_text: str, dataset_file: Optional[str], owner: Optional[str]) -> dict[str, Any]:
        try:
            spec, warnings = self.parse_client_spec(spec_text, dataset_file)
        except (SpecError, ValueError, OSError) as exc:
            return {"job_id": None, "status": "rejected", "error": self.calm(str(exc), dataset_file)}
        job = self.jobs.submit(spec, owner=owner, **self._hub_identity())
        out = {"job_id": job.id, "status": job.status, "error": job.error, "warnings": warnings}
        if job.error_details and job.error_details.issues:
            out["issues"] = job.error_details.issues
        return self.calm(out, dataset_file)

    def list_jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = []
        for job in self.jobs.list(limit=limit):
            snap = self.jobs.snapshot(job.id)
            rows.append({"id": job.id, "name": job.name, "status": job.status, "owner": job.owner,
                         "percent": snap.percent, "step": snap.step, "total_steps": snap.total_steps,
                         "loss": snap.loss, "created_at": job.created_at, "error": job.error})
        return rows

    def status(self, job_id: str, series: bool = True) -> dict[str, Any]:
        """The job as JSON (see JobManager.describe) plus samples/s and its trainer, not the spec; cached briefly."""
        key, now = (job_id, bool(series)), time.monotonic()
        with self._status_lock:
            hit = self._status_cache.get(key)
        if hit and now - hit[0] < STATUS_CACHE_SECONDS:
            return hit[1]
        data = self.jobs.describe(job_id, series=series)
        spec = stored_spec(data.pop("spec", None))
        per_step, rate = samples_per_step(spec), data["progress"].get("steps_per_second")
        data["trainer"], data["is_sweep"] = trainer_of(spec), bool(spec and spec.sweep)
        data["samples_per_second"] = round(rate * per_step, 2) if rate and per_step else None
        with self._status_lock:
            if len(self._status_cache) > 256:  # ids nobody asks for any more
                self._status_cache.clear()
            self._status_cache[key] = (now, data)
        return data

    def job_view(self, job_id: str) -> dict[str, Any]:
        """What the Jobs tab shows for one job: status with every series, and the actions possible now."""
        data = self.status(job_id, series=True)
        has_checkpoint = bool(data["paths"].get("last_checkpoint"))
        return {**data, "actions": allowed_actions(data["status"], has_checkpoint)}

    def compare_runs(self, job_ids: list[str]) -> list[tuple[str, dict]]:
        """(label, progress with series) of each job that still exists, for overlaying loss curves."""
        out = []
        for job_id in job_ids:
            try:
                job = self.status(job_id, series=True)
            except KeyError:
                continue
            out.append((f"{job['name']} · {job['id']}", job["progress"]))
        return out

    def may_download(self, ident: Identity, job_id: str) -> bool:
        """Artifacts (adapter weights, data-derived logs) go to the Space's members, and to the job's owner."""
        if not on_space():
            return True
        owner = self.jobs.get(job_id).owner
        return is_member(ident) or bool(ident.username and owner and ident.username.lower() == owner.lower())

    def downloads(self, job_id: str, ident: Identity) -> list[str]:
        """Download copies of a finished job's artifacts (adapter .zip, spec, events, evaluation)."""
        from ..jobs.exports import export_artifacts

        job = self.jobs.get(job_id)
        if job.status not in TERMINAL or not self.may_download(ident, job_id):
            return []
        return [str(p) for p in export_artifacts(job.id, job.job_dir)]

    def events(self, job_id: str, interval: float = 1.0, timeout: Optional[float] = None) -> Iterator[dict]:
        """Progress snapshots until the job ends (one per change, at most one per `interval`)."""
        deadline = stream_deadline(EVENTS_STREAM_MAX_SECONDS if timeout is None else timeout)
        last = None
        while True:
            job = self.jobs.get(job_id)
            snap = self.jobs.snapshot(job.id).to_dict(series=False)
            current = (job.status, snap.get("step"), snap.get("last_event_time"))
            if current != last:
                yield {"id": job.id, "status": job.status, "progress": snap, "error": job.error}
                last = current
            if job.status in TERMINAL or time.monotonic() > deadline:
                return
            time.sleep(interval)

    @staticmethod
    def _hub_identity() -> dict[str, Any]:
        """What a job started by the caller acts with on the Hub: their token (held outside every job file until
        the job ends: jobs/tokens.py) and whose it is, in words (recorded on the job, shown in Jobs)."""
        token = hub_token()
        return {"hub_token": token if isinstance(token, str) else None,
                "hub_identity": hub_identity_label(current_caller())}

    def _forget(self, job_id: str) -> None:
        """An action changed the job: the next status read must show it, not a cached answer from before."""
        with self._status_lock:
            for key in [k for k in self._status_cache if k[0] == job_id]:
                del self._status_cache[key]

    def stop(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.stop(job_id)
        self._forget(job.id)
        return {"id": job.id, "status": job.status}

    def resume(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.resume(job_id, **self._hub_identity())
        self._forget(job.id)
        return {"id": job.id, "status": job.status}

    def continue_training(self, job_id: str, epochs: float) -> dict[str, Any]:
        job = self.jobs.continue_training(job_id, epochs, **self._hub_identity())
        return {"id": job.id, "status": job.status, "parent_id": job.parent_id}

    def push(self, job_id: str, repo_id: Optional[str], merged: bool, gguf: bool = False) -> dict[str, Any]:
        """Push with the caller's own Hub identity (access.hub_token): on a Space never the Space's token for
        anyone but its owner; a caller without a token gets the Hub's 'no token' refusal."""
        token = hub_token()
        if token is False:
            raise HubAuthError("pushing needs your own Hugging Face token: sign in with the Hub button (the Space "
                               "asks for write access), or pass your token to the client")
        job = self.jobs.push(job_id, repo_id or None, merged, token, gguf=gguf)
        self._forget(job.id)
        return {"id": job.id, "status": job.status, "hub_url": (job.artifacts or {}).get("hub_url"),
                "gguf_url": (job.artifacts or {}).get("gguf_url"), "error": job.error}

    def logs(self, job_id: str, tail: int = 200) -> str:
        return self.jobs.logs(job_id, tail)

    def finished_adapters(self) -> dict[str, str]:
        """Finished jobs' adapters for the Chat tab, newest first: label (name · id, as the Jobs tab writes it)
        -> job id (adapter_path turns it into the folder; the page never holds a server path)."""
        out = {}
        for job in self.jobs.list(status=JobStatus.SUCCEEDED):
            if has_trained_model(job.job_dir):
                out[f"{job.name} · {job.id}"] = job.id
        return out

    # ---- chat, compare, evaluate: through here like every other endpoint; the loaded bases are shared and
    # bounded (inference.MODELS, model_cache.py) -------------------------------------------------------------
    def adapter_path(self, ref: str) -> str:
        """A job id -> its folder; other refs (a job folder, a Hub repo id) pass the path checks
        (uploads.check_client_path: UnsafePath, a ValueError, for anything outside)."""

        try:
            return self.jobs.get(ref).job_dir
        except (KeyError, ValueError):  # a trained adapter is only ever inside a job's folder here
            return check_client_path(ref, [self.jobs.jobs_dir] if on_space() else [self.data_dir], "adapter")

    def chat(self, ref: str, messages: list[dict], settings: GenerationSettings, system: Optional[str] = None,
             tools: Optional[list[dict]] = None) -> Iterator[str]:
        """The fine-tuned model's answer so far, token by token (`tools`: schemas it may call, tool_calls.py)."""
        from ..inference import chat_stream

        yield from chat_stream(self.adapter_path(ref), messages, settings, system, token=demo_hub_token(ref),
                               tools=tools)

    def chat_turn(self, ref: str, messages: list[dict], base_messages: Optional[list[dict]],
                  settings: GenerationSettings, system: Optional[str] = None,
                  on_phase: Optional[Callable[[str], None]] = None,
                  tools: Optional[list[dict]] = None) -> Iterator[tuple[str, Optional[str]]]:
        """(fine-tuned answer so far, base answer so far or None); the base answers only in compare mode, at the
        same time as the fine-tuned model. on_phase("loading model") comes (with a ("", …) item to show it) before
        a base that is not loaded yet loads (inference.chat_turn)."""
        from ..inference import chat_turn

        yield from chat_turn(self.adapter_path(ref), messages, base_messages, settings, system,
                             token=demo_hub_token(ref), on_phase=on_phase, tools=tools)

    def compare(self, ref: str, messages: list[dict], settings: GenerationSettings, system: Optional[str] = None,
                tools: Optional[list[dict]] = None) -> dict[str, str]:
        """{base, fine_tuned}: the same prompt answered with the adapter off and on (one loaded model)."""
        from ..inference import compare

        return compare(self.adapter_path(ref), messages, settings, system, demo_hub_token(ref), tools)

    def evaluate(self, ref: str, data_path: Optional[str], max_examples: int, settings: GenerationSettings,
                 progress: Optional[Callable[[float, str], None]] = None) -> Any:
        """Base vs fine-tuned on held-out data (the job's validation split unless data_path is given)."""
        from ..evaluation.heldout import evaluate

        data_path = self.client_path(data_path, "evaluation data") if data_path else None
        return evaluate(self.adapter_path(ref), data_path, max_examples, settings, progress=progress,
                        token=hub_token())


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 300 else text[:297] + "..."
