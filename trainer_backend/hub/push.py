"""Push a finished job's adapter (and optionally the merged model) to a Hub repo, with a model card.

What lands in the repo (root = what `PeftModel.from_pretrained(base, repo_id)` reads):
  adapter_config.json, adapter_model.safetensors, tokenizer files + chat_template.jinja, lora_studio.json (marker)
  README.md                     model card (metadata, usage snippet, data, hyperparameters, results)
  training/spec.yaml            the spec as run, secrets and local output_dir removed
  training/metrics.json         final metrics + loss history
  training/data_report.json     dataset report without the rendered data sample
  training/loss.png             loss curve (when Pillow is available)
The merged model goes to its own repo `<repo>-merged`, so that `AutoModelForCausalLM.from_pretrained` works on
it directly and the adapter repo stays small.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import yaml

from ..job_files import ADAPTER_DIR, EVAL_FILE, MERGED_DIR, META_FILE, REPORT_FILE, SPEC_FILE
from ..model_card import build_model_card, is_hub_id
from ..spec import JobSpec, SpecError, load_job_spec, repo_id_problem
from ..spec_export import ExportSpec
from ..training.adapter_meta import AdapterMeta, read_adapter_meta
from ..redaction import TOKEN_PATTERN, without_secrets
from .client import (DEFAULT_RETRY, HubError, RetryPolicy, Token, call_with_retries, classify,
                     resolve_token)
from .plot import loss_series, write_loss_plot

log = logging.getLogger(__name__)
T = TypeVar("T")

# The job dir layout written by training.run (not imported from there: that would pull in torch and
# transformers for every import of this package; test_hub checks the names agree).
MERGED_SUFFIX = "-merged"
GGUF_SUFFIX = "-GGUF"  # the repo a push puts GGUF files in (export/publish.py), unless they go with the adapter
MAX_NAME = 96
# Left out of the repo: peft's placeholder card (ours replaces it) and the pickled TrainingArguments
# (pickles are flagged by the Hub's scanner and nobody needs them to load the adapter).
SKIP_ADAPTER_FILES = {"README.md", "training_args.bin"}
TEXT_SUFFIXES = {".json", ".yaml", ".yml", ".md", ".txt", ".jinja", ".model", ".py"}


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    url: str
    commit: str
    merged: Optional["PushResult"] = None  # the `<repo>-merged` push, when asked for
    gguf: Optional["PushResult"] = None    # the `<repo>-GGUF` push of the job's export, when asked for


def hub_repo_name(name: str, reserve: int = len(MERGED_SUFFIX) + 4) -> str:
    """A valid Hub repo name from a free-form name: [A-Za-z0-9._-], no '--'/'..', no leading/trailing '-'/'.',
    short enough to take a '-merged' and a '-NN' suffix."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip())
    out = re.sub(r"-{2,}", "-", re.sub(r"\.{2,}", ".", out))
    out = out[:MAX_NAME - reserve].strip("-.")
    if out.endswith(".git"):
        out = out[:-4].strip("-.")
    return out or "lora-adapter"


def check_repo_id(repo_id: str) -> None:
    """Raise HubError when `repo_id` breaks the Hub's naming rules (checked before any network call)."""
    problem = repo_id_problem(repo_id)
    if problem:
        raise HubError(problem)


def push_adapter(job_dir: str | Path, repo_id: Optional[str] = None, token: Token = None, private: bool = True,
                 merged: bool = False, endpoint: Optional[str] = None, retry: RetryPolicy = DEFAULT_RETRY,
                 sleep: Optional[Callable[[float], None]] = None, gguf: bool = False) -> PushResult:
    """Push `<job_dir>/adapter` (+ card, spec, metrics, loss plot) to `repo_id` (default `<user>/<project_name>`).

    The default name gets `-2`, `-3`, ... when a repo of that name exists and was not made by LoRA Studio (no
    `lora_studio.json` in it); an explicit `repo_id` is used as given. Transient failures are retried per
    `retry`; everything raises a HubError whose text never contains the token. The job dir is only read.
    gguf=True: also the job's finished export (GGUF files, Modelfile; export/publish.py), into `<repo>-GGUF` or
    the adapter's repo as the export's gguf_repo says.
    """
    from huggingface_hub import HfApi

    job_dir = Path(job_dir)
    adapter_dir = job_dir / ADAPTER_DIR
    meta = read_adapter_meta(adapter_dir)
    if meta is None:
        raise HubError(f"no trained adapter in {adapter_dir} (missing {META_FILE}): train the job first")
    spec = job_spec(job_dir)
    tok = resolve_token(token)
    api = HfApi(endpoint=endpoint, token=tok, library_name="lora-studio")
    kwargs: dict[str, Any] = {"token": tok, "retry": retry, **({"sleep": sleep} if sleep else {})}

    def call(fn: Callable[[], T], what: str) -> T:
        return call_with_retries(fn, what, **kwargs)

    target = _target_repo(api, call, repo_id, spec.project_name if spec else job_dir.name)
    if merged and not meta.lora:
        raise HubError("merged=True needs a LoRA adapter; this job trained the full model, which is pushed as is")
    export = _finished_export(job_dir) if gguf else None
    separate = export is not None and ExportSpec.model_validate(export.spec).gguf_repo == "separate"
    if separate:
        check_repo_id(target + GGUF_SUFFIX)
    with tempfile.TemporaryDirectory(prefix="lora-studio-push-", dir=job_dir) as tmp:  # same disk: GGUFs link
        license = _base_license(api, meta.base_model)
        stage = Path(tmp) / "repo"
        stage_adapter(job_dir, stage, target, meta, spec, license)
        gguf_stage = Path(tmp) / "gguf"
        if export is not None:
            _stage_gguf(job_dir, gguf_stage if separate else stage, export, target, meta, license, separate)
            scan_for_secrets(gguf_stage if separate else stage, tok)
        scan_for_secrets(stage, tok)
        merged_stage = Path(tmp) / MERGED_DIR
        if merged:  # merge (and check it) before uploading anything, so a failed merge pushes nothing
            check_repo_id(target + MERGED_SUFFIX)
            _merge_and_stage(adapter_dir, merged_stage, target, meta, spec, license, tok, job_dir)
        result = _upload(api, call, stage, target, private, _commit_message(spec, meta, "adapter"))
        log.info("pushed %s to %s (%s)", adapter_dir, result.url, result.commit[:8])
        extra: dict[str, PushResult] = {}
        try:
            if merged:
                extra["merged"] = _upload(api, call, merged_stage, target + MERGED_SUFFIX, private,
                                          _commit_message(spec, meta, "merged"))
            if separate:
                extra["gguf"] = _upload(api, call, gguf_stage, target + GGUF_SUFFIX, private,
                                        _commit_message(spec, meta, "GGUF files"))
        except HubError as exc:
            exc.pushed = result  # the adapter did get there; only the merged model / GGUF files are missing
            raise
        return PushResult(result.repo_id, result.url, result.commit, **extra)


def _finished_export(job_dir: Path) -> Any:
    from ..export.publish import ExportNotReady, finished_export

    try:
        return finished_export(job_dir)
    except ExportNotReady as exc:
        raise HubError(str(exc)) from None


def _stage_gguf(job_dir: Path, stage: Path, export: Any, target: str, meta: AdapterMeta, license: Optional[str],
                separate: bool) -> None:
    """The export's files into `stage`, with the -GGUF repo's card, or a section added to the adapter's card."""
    from ..export.publish import export_section, gguf_card, stage_export

    stage_export(job_dir, stage, export)
    card = stage / "README.md"
    if separate:
        card.write_text(gguf_card(target + GGUF_SUFFIX, target, meta.base_model, export, license), encoding="utf-8")
    else:
        card.write_text(card.read_text(encoding="utf-8") + "\n" + export_section(export), encoding="utf-8")


def _merge_and_stage(adapter_dir: Path, out: Path, target: str, meta: AdapterMeta, spec: Optional[JobSpec],
                     license: Optional[str], token: str, job_dir: Path) -> None:
    from .merge import merge_adapter  # here: it imports torch, peft and transformers

    try:
        report = merge_adapter(adapter_dir, out, token=token)  # revision, trust_remote_code: as trained
    except Exception as exc:  # noqa: BLE001 - loading the base can fail in many ways; say which, redacted
        error = classify(exc, "merge the adapter into its base", token)
    else:
        log.info("merged adapter into base (%s, max |logit diff| %.2e)", report.dtype, report.max_abs_diff)
        card = build_model_card(target + MERGED_SUFFIX, meta, spec, _report(job_dir), license=license,
                                plot_note=f"see the adapter repo {target}", merged_from=target)
        (out / "README.md").write_text(card, encoding="utf-8")
        scan_for_secrets(out, token)
        return
    raise error  # outside the except block: no chained library exception


def _target_repo(api: Any, call: Callable[..., Any], repo_id: Optional[str], project_name: str) -> str:
    if repo_id:
        if "/" not in repo_id:
            repo_id = f"{call(api.whoami, 'check the token')['name']}/{repo_id}"
        check_repo_id(repo_id)
        return repo_id
    user = call(api.whoami, "check the token")["name"]
    name = hub_repo_name(project_name)
    for n in range(1, 100):
        candidate = f"{user}/{name}" if n == 1 else f"{user}/{name}-{n}"
        files = call(lambda: _repo_files(api, candidate), f"look up {candidate}")
        if files is None or not (set(files) - {".gitattributes"}) or META_FILE in files:
            return candidate  # free, empty (an earlier push that failed half-way), or ours: push a new commit
        log.info("%s exists and was not made by LoRA Studio; trying the next name", candidate)
    raise HubError(f"no free repo name for '{name}' under {user} (tried {name} to {name}-99): pass repo_id")


def _repo_files(api: Any, repo_id: str) -> Optional[list[str]]:
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return api.list_repo_files(repo_id)
    except RepositoryNotFoundError:
        return None


def _upload(api: Any, call: Callable[..., Any], folder: Path, repo_id: str, private: bool, message: str) -> PushResult:
    url = call(lambda: api.create_repo(repo_id, private=private, exist_ok=True), f"create repo {repo_id}")
    info = call(lambda: api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=message),
                f"upload to {repo_id}")
    return PushResult(repo_id, str(url), info.oid)


def _commit_message(spec: Optional[JobSpec], meta: AdapterMeta, what: str) -> str:
    step = meta.metrics.get("step")
    return f"LoRA Studio: {spec.project_name if spec else 'job'} {what} ({meta.trainer}" + \
        (f", step {step})" if step is not None else ")")


def job_spec(job_dir: Path) -> Optional[JobSpec]:
    """The job's spec as it ran (spec.yaml), or None when the folder has none or it no longer parses (an adapter
    folder from elsewhere, a spec from an older version): the card then says only what the adapter recorded."""
    try:
        return load_job_spec(job_dir / SPEC_FILE)[0] if (job_dir / SPEC_FILE).is_file() else None
    except (SpecError, ValueError, OSError) as exc:
        log.warning("%s: not used for the model card (%s)", job_dir / SPEC_FILE, str(exc).splitlines()[0])
        return None


def _report(job_dir: Path) -> Optional[dict[str, Any]]:
    path = job_dir / REPORT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def stage_adapter(job_dir: Path, stage: Path, repo_id: str, meta: AdapterMeta, spec: Optional[JobSpec],
                  license: Optional[str] = None) -> None:
    """Lay out the repo's files in `stage` (see the module docstring)."""
    adapter_dir = job_dir / ADAPTER_DIR
    stage.mkdir(parents=True)
    for path in sorted(adapter_dir.rglob("*")):
        rel = path.relative_to(adapter_dir)
        if path.is_file() and rel.as_posix() not in SKIP_ADAPTER_FILES:
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, stage / rel)
    training = stage / "training"
    training.mkdir()
    public_spec = without_secrets({k: v for k, v in (spec.to_public_dict() if spec else {}).items()
                                  if k != "output_dir"})
    (training / SPEC_FILE).write_text(yaml.safe_dump(public_spec, sort_keys=False, allow_unicode=True),
                                        encoding="utf-8")
    train, evals = loss_series(job_dir)
    metrics = {"final": meta.metrics, "train_loss": [{"step": s, "loss": v} for s, v in train],
               "eval_loss": [{"step": s, "loss": v} for s, v in evals]}
    (training / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    report = _report(job_dir)
    if report is not None:
        report.pop("sample", None)  # a rendered training row: user data stays off the Hub unless they push it
        (training / REPORT_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    plot_note = write_loss_plot(job_dir, training / "loss.png")
    evaluation_file = job_dir / EVAL_FILE
    evaluation = json.loads(evaluation_file.read_text(encoding="utf-8")) if evaluation_file.is_file() else None
    card = build_model_card(repo_id, meta, spec, report, license=license,
                            plot_path=None if plot_note else "training/loss.png", plot_note=plot_note,
                            end_of_turn_is_token=_is_single_token(adapter_dir, meta.end_of_turn),
                            evaluation=evaluation)
    (stage / "README.md").write_text(card, encoding="utf-8")


def scan_for_secrets(folder: Path, token: Optional[str]) -> None:
    """Refuse to push a file that contains the token, or (in text files) anything shaped like an HF token."""
    needle = token.encode() if token else None
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        found = bool(needle and _contains(path, needle))
        if not found and path.suffix in TEXT_SUFFIXES:
            found = TOKEN_PATTERN.search(path.read_text(encoding="utf-8", errors="replace")) is not None
        if found:
            raise HubError(f"refusing to push: {path.relative_to(folder)} contains what looks like a Hugging Face "
                           "token; remove it from the job files and push again")


def _contains(path: Path, needle: bytes, chunk: int = 1 << 24) -> bool:
    """Whether the file holds `needle`, read in chunks (a GGUF file can be many GB)."""
    tail = b""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            if needle in tail + block:
                return True
            tail = block[-len(needle):]
    return False


def _is_single_token(adapter_dir: Path, marker: Optional[str]) -> bool:
    if not marker:
        return False
    try:
        tokenizer_json = json.loads((adapter_dir / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # no fast tokenizer file: assume a special token, as every shipped template uses
    added = {t.get("content") for t in tokenizer_json.get("added_tokens") or []}
    bpe = tokenizer_json.get("model") or {}  # tokenizers' model section (BPE, WordPiece...), not a spec field
    return marker in added or marker in (bpe.get("vocab") or {})


def _base_license(api: Any, base: str) -> Optional[str]:
    """The base model's license, which an adapter inherits; best effort, never fails the push."""
    from huggingface_hub import ModelCard

    try:
        if is_hub_id(base):
            card = api.model_info(base).card_data
            return card.get("license") if card else None
        readme = Path(base) / "README.md"
        return ModelCard.load(readme).data.to_dict().get("license") if readme.is_file() else None
    except Exception as exc:  # noqa: BLE001 - optional metadata
        log.debug("no license for %s: %s", base, type(exc).__name__)
        return None
