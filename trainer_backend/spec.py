"""JobSpec: the single typed description of a training job.

UI widgets, CLI overrides, YAML files, the API schema and validation are all derived from these models.
Field metadata (`ui`: "basic" | "advanced" | "compute", ranges via ge/le, `description`) is what the UI renders.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import Field, SecretStr, field_validator, model_validator

from .errors import SpecError  # re-exported: callers catch spec.SpecError
from .job_files import SYNC_REPO_PREFIX
from .spec_base import _f, _Section
from .spec_env import expand_env, refuse_env_refs  # noqa: F401  (refuse_env_refs: re-exported)
from .spec_compute import ComputeSpec
from .spec_evaluation import EvaluationSpec
from .spec_export import ExportSpec
from .spec_rl import GRPOSpec, KTOSpec, rl_problems
from .spec_sweep import SweepSpec, sweep_problems
from .trainer_registry import DATA_FORMATS as DATA_FORMATS  # re-exported: the formats there are
from .spec_training import LengthSpec, LoraSpec, TrainerName, TrainingSpec  # noqa: F401  (re-exported)
from .spec_values import CHAT_TEMPLATES, RUN_NAME
from .trainer_registry import TRAINERS, trainer_info

AVAILABLE_TRAINERS: set[str] = set(TRAINERS)
ChatTemplateName = Literal[CHAT_TEMPLATES]  # type: ignore[valid-type]  # spec_values.py
FormatName = Literal["auto", "text", "alpaca", "qa", "messages", "sharegpt", "prompt_completion", "xlam", "preference",
                     "tokenized", "prompt", "feedback"]  # = "auto" + trainer_registry.DATA_FORMATS (a test checks)
# The data formats each trainer trains on (trainer_registry.py): the data check refuses the rest, and the command
# matrix test (tests/test_command_matrix.py) gets one cell per trainer x format from here.
TRAINER_FORMATS: dict[str, tuple[str, ...]] = {name: t.formats for name, t in TRAINERS.items()}


class ModelSpec(_Section):
    base_model: str = _f(..., "Hub model id (e.g. Qwen/Qwen2.5-0.5B-Instruct) or a local folder.", "basic")
    revision: Optional[str] = _f(None, "Hub revision (branch, tag or commit) of the base model.", label="Revision")
    trust_remote_code: bool = _f(False, "Run model code shipped in the repo. Only enable for repos you trust.",
                                 label="Trust remote code")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = _f(
        "auto", "Attention kernel. 'auto' picks flash-attention when installed on GPU, else SDPA.",
        label="Attention kernel")


    @field_validator("base_model")
    @classmethod
    def _absolute_local_path(cls, v: str) -> str:
        # adapter_config.json records this string: a relative folder would break loading from elsewhere
        path = Path(v).expanduser()
        return str(path.resolve()) if path.is_dir() else v


class ColumnMapping(_Section):
    """Which dataset column plays which role. Unset fields are filled by format detection."""
    text: Optional[str] = _f(None, "Column with plain text (text format).")
    prompt: Optional[str] = _f(None, "Instruction / question / prompt column.")
    input: Optional[str] = _f(None, "Context added to the prompt after a blank line (alpaca 'input', Dolly 'context', "
                                    "SQuAD 'context', a passage or document).")
    response: Optional[str] = _f(None, "Answer / output / completion column (xlam: the calls that answer). Any column "
                                       "may be a nested field as a dotted path, e.g. answers.text.")
    messages: Optional[str] = _f(None, "Column holding a conversation (list of messages or a JSON string).")
    system: Optional[str] = _f(None, "Optional system prompt column.")
    chosen: Optional[str] = _f(None, "Preferred answer column (preference data).")
    rejected: Optional[str] = _f(None, "Rejected answer column (preference data).")
    margin: Optional[str] = _f(None, "Optional reward margin column (reward trainer).")
    label: Optional[str] = _f(None, "Thumbs-up/down column of feedback data (kto): true/false, 1/0, up/down, ...")
    tools: Optional[str] = _f(None, "Column declaring the tools a row may call (tool calling): a list of {name, "
                                    "description, parameters}, OpenAI's {type: function, function: {...}}, or JSON.")
    roles: dict[str, str] = _f({}, "Extra role names to map, e.g. {bot: assistant}. Targets: system/user/assistant.")

    @field_validator("roles")
    @classmethod
    def _role_targets(cls, v: dict[str, str]) -> dict[str, str]:
        bad = {k: t for k, t in v.items() if t not in ("system", "user", "assistant")}
        if bad:
            raise ValueError(f"roles must map to system/user/assistant, got {bad}")
        return v


class PromptTemplate(_Section):
    """A user-written template: `{column}` placeholders for the prompt part and the response part."""
    preset: Optional[Literal["alpaca", "qa"]] = _f(None, "Built-in template; fills prompt/response below.")
    prompt: Optional[str] = _f(None, "Prompt part, e.g. '### Question:\\n{question}\\n\\n### Answer:'.")
    prompt_if_empty: Optional[str] = _f(
        None, "Variant used when a column that only `prompt` mentions is empty (Alpaca without input).")
    response: Optional[str] = _f(None, "Response part, e.g. ' {answer}'.")

    @model_validator(mode="after")
    def _complete(self) -> "PromptTemplate":
        if self.preset is None and (not self.prompt or not self.response):
            raise ValueError("prompt_template needs `preset`, or both `prompt` and `response`")
        return self

    def filled_from(self, preset: "PromptTemplate") -> "PromptTemplate":
        """This template with the parts it leaves out taken from `preset` (the preset's own text)."""
        return PromptTemplate(prompt=self.prompt or preset.prompt, response=self.response or preset.response,
                              prompt_if_empty=self.prompt_if_empty or preset.prompt_if_empty)


class DataSpec(_Section):
    path: str = _f(..., "File, list of files (comma-separated), folder with train.*/valid.*, or Hub dataset id.",
                   "basic")
    config_name: Optional[str] = _f(None, "Hub dataset configuration (subset) name.", label="Hub dataset subset")
    train_split: str = _f("train", "Name of the training split.", "basic", label="Training split")
    valid_split: Optional[str] = _f(
        None, "Held-out data for evaluation: none, 'auto' (carve `valid_fraction` out of train), or a split name.",
        "basic", label="Validation split", group="evaluation")
    valid_fraction: float = _f(0.05, "Fraction of train held out when valid_split is 'auto'.", gt=0, lt=0.9,
                               label="Held-out fraction", group="evaluation", when="data.valid_split=auto")
    format: FormatName = _f("auto", "Dataset format; 'auto' detects it and explains why.", "basic",
                            label="Data format")
    column_mapping: ColumnMapping = Field(default_factory=ColumnMapping)
    chat_template: ChatTemplateName = _f(
        "tokenizer", "Chat template: the tokenizer's own, a shipped one, or 'none' (plain text).", "basic",
        label="Chat template")
    prompt_template: Optional[PromptTemplate] = _f(None, "Render rows with a custom prompt template.")
    system_prompt: Optional[str] = _f(None, "System message added to conversations that have none.",
                                      label="Default system prompt")
    text_split: Literal["auto", "file", "paragraph"] = _f(
        "auto", "For .txt files: one document per file, or per blank-line separated block.", label="Text files")
    too_long: Literal["truncate", "drop"] = _f("truncate", "What to do with samples longer than block_size.",
                                               label="Too-long samples")
    max_errors: int = _f(20, "Stop collecting data errors after this many.", ge=1, le=10000,
                         label="Errors collected at most")
    bad_rows: Literal["refuse", "skip"] = _f(
        "refuse", "Rows with problems (a call off its tool's schema, a broken conversation): refuse the data and list "
                  "them, or skip them and train on the rest (the report says how many and why).",
        label="Rows with problems")
    max_rows: Optional[int] = _f(None, "Use only the first N rows of each split (quick experiments).", ge=1,
                                 label="Rows used at most")

    @field_validator("valid_split", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if v in ("", "none", "None") else v


class HubSpec(_Section):
    push_to_hub: bool = _f(False, "Push the adapter to the Hub after training.", "basic",
                           label="Push to the Hub when done")
    repo_id: Optional[str] = _f(None, "Target repo 'user/name' (default: <user>/<project_name>).", label="Repo id",
                                when="hub.push_to_hub=true")
    private: bool = _f(True, "Create the repo private.", label="Private repo", when="hub.push_to_hub=true")
    token: Optional[SecretStr] = _f(None, "HF token; use '${HF_TOKEN}'. Never written to disk or logs.")
    sync: bool = _f(False, "Keep the job on the Hub while it trains (events, checkpoints, adapter in a private repo): a "
                           "restart with an empty disk lists it again and resumes it. Always on for hf_jobs.",
                     label="Keep the job on the Hub")
    sync_repo: Optional[str] = _f(None, "Repo the job is kept in (default: <user>/lora-studio-job-<job id>, private).",
                                  label="Sync repo", when="hub.sync=true")
    sync_every: int = _f(60, "Seconds between syncs of events and logs (checkpoints go up as soon as saved).",
                         ge=2, le=3600, label="Sync every (seconds)", when="hub.sync=true")
    pause_space_when_idle: bool = _f(False, "On a paid-GPU Space: pause the Space when the job queue is empty "
                                            "(stops billing; restart it from the Space page). Off by default.",
                                      label="Pause the Space when idle")

    @field_validator("token", mode="before")
    @classmethod
    def _blank_token_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v


class JobSpec(_Section):
    project_name: str = _f("lora-studio-run", "Run name; also the default output folder.", "basic", label="Run name",
                           group="method")
    output_dir: Optional[str] = _f(None, "Job directory (default: ./<project_name>).")
    model: ModelSpec
    data: DataSpec
    lora: LoraSpec = Field(default_factory=LoraSpec)
    lengths: LengthSpec = Field(default_factory=LengthSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    hub: HubSpec = Field(default_factory=HubSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    grpo: GRPOSpec = Field(default_factory=GRPOSpec)
    kto: KTOSpec = Field(default_factory=KTOSpec)
    # Not a form field: the Train tab's "Find good settings" box edits it (ui/sweep_form.py)
    sweep: Optional[SweepSpec] = Field(None, description="Search these settings instead of training once: each "
                                                         "trial is a job of its own (spec_sweep.py).")

    @field_validator("project_name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not RUN_NAME.fullmatch(v):
            raise ValueError("project_name may use letters, digits, '.', '_' and '-' (max 96, no leading symbol)")
        return v

    @model_validator(mode="after")
    def _cross_field(self) -> "JobSpec":
        ln, tr = self.lengths, self.training
        problems = []
        if ln.block_size > ln.model_max_length:
            problems.append(f"lengths.block_size ({ln.block_size}) must be <= lengths.model_max_length "
                            f"({ln.model_max_length}); lower block_size or raise model_max_length")
        if ln.max_prompt_length and ln.max_prompt_length >= ln.block_size:
            problems.append(f"lengths.max_prompt_length ({ln.max_prompt_length}) must be < lengths.block_size "
                            f"({ln.block_size}) so the answer still fits")
        if ln.max_prompt_length and ln.max_completion_length and \
                ln.max_prompt_length + ln.max_completion_length > ln.block_size:
            problems.append("lengths.max_prompt_length + max_completion_length must be <= block_size")
        if tr.quantization != "none" and not self.lora.enabled:
            problems.append(f"training.quantization={tr.quantization} needs lora.enabled=true "
                            "(a quantized base can only be trained through an adapter)")
        if tr.eval_strategy == "steps" and not tr.eval_steps:
            problems.append("training.eval_strategy='steps' needs training.eval_steps")
        if tr.save_strategy == "steps" and not tr.save_steps:
            problems.append("training.save_strategy='steps' needs training.save_steps")
        pairs = trainer_info(tr.trainer).pairs
        if pairs and self.data.format not in ("auto", "preference"):
            problems.append(f"trainer '{tr.trainer}' needs preference data (prompt/chosen/rejected); "
                            f"data.format is '{self.data.format}'")
        if pairs and self.data.prompt_template is not None:
            problems.append(f"trainer '{tr.trainer}' does not use data.prompt_template; remove it")
        if self.hub.repo_id:
            problem = repo_id_problem(self.hub.repo_id if "/" in self.hub.repo_id else f"user/{self.hub.repo_id}")
            if problem:
                problems.append(f"hub.repo_id: {problem}")
        if self.compute.backend == "hf_jobs" and tr.accelerate_config:
            problems.append("training.accelerate_config is a file on this machine: an HF Job cannot read it; use "
                            "training.distributed instead")
        if self.hub.sync_repo:
            problem = repo_id_problem(self.hub.sync_repo)
            if problem:
                problems.append(f"hub.sync_repo: {problem}")
            elif not self.hub.sync_repo.split("/")[1].startswith(SYNC_REPO_PREFIX):
                problems.append(f"hub.sync_repo: the name must start with '{SYNC_REPO_PREFIX}' (the sync replaces "
                                "files in it: it must not be a model or dataset repo of yours)")
        problems += rl_problems(self)
        problems += sweep_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def synced(self) -> bool:
        """Does this job keep itself on the Hub (hub.sync, or any HF Jobs run)?"""
        return self.hub.sync or self.compute.backend == "hf_jobs"

    # ---- derived values -------------------------------------------------------------------------
    @property
    def job_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path.cwd() / self.project_name

    @property
    def packing(self) -> Optional[bool]:
        """True/False when decided by the spec; None = decided at training time from the attention kernel."""
        if self.training.packing is not None:
            return self.training.packing
        return True if trainer_info(self.training.trainer).documents else None

    # ---- YAML -------------------------------------------------------------------------------------
    def to_public_dict(self) -> dict[str, Any]:
        """The spec as plain data with every secret removed (safe for job files, logs, API output)."""
        data = self.model_dump(mode="json", exclude_none=True)
        data.get("hub", {}).pop("token", None)
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_public_dict(), sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml(), encoding="utf-8")
        return path


def repo_id_problem(repo_id: str) -> Optional[str]:
    """What is wrong with `repo_id` by the Hub's own naming rules (huggingface_hub's validator), or None."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        return f"invalid repo id '{repo_id}': {exc}"
    if repo_id.count("/") != 1 or repo_id.endswith(".git"):
        return f"invalid repo id '{repo_id}': expected 'user/name'"
    return None


def parse_spec(raw: dict[str, Any], source: str = "spec", *, expand: bool = False) -> tuple[JobSpec, list[str]]:
    """Build a JobSpec from a YAML tree (ours or an AutoTrain config). Returns the spec and warnings.
    `expand`: replace ${VAR} with this process's environment (a person's own YAML file, see load_spec)."""
    from pydantic import ValidationError

    from .autotrain import is_autotrain_config, translate_autotrain

    if not isinstance(raw, dict):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    warnings: list[str] = []
    if is_autotrain_config(raw):
        raw, warnings = translate_autotrain(raw)
    if expand:
        raw = expand_env(raw)
    try:
        return JobSpec.model_validate(raw), warnings
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, source)) from None


def format_validation_error(exc: Any, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s) in the job spec:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; `python -m trainer_backend schema` lists every key)"
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


def load_spec(path: str | Path, overrides: Optional[list[str]] = None, *,
              expand: bool = True) -> tuple[JobSpec, list[str]]:
    """Read a YAML job file, apply `a.b=value` overrides, validate. ${VAR} is expanded (a person's own file, run
    from their command line); a job's saved spec is read with load_job_spec, which expands nothing."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    for item in overrides or []:
        apply_override(raw, item)
    return parse_spec(raw, str(path), expand=expand)


def load_job_spec(path: str | Path, overrides: Optional[list[str]] = None) -> tuple[JobSpec, list[str]]:
    """A job's own saved spec (written by JobSpec.save, already expanded once and free of secrets): taken as
    written, so that a '${...}' in it can never pick up the environment of the process that reads it."""
    return load_spec(path, overrides, expand=False)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `section.key=value` override; the value is parsed as YAML (so 1e-4, true, [a, b] work)."""
    if "=" not in item:
        raise SpecError(f"override '{item}' must look like section.key=value")
    dotted, value = item.split("=", 1)
    node = raw
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"override '{item}': '{part}' is not a section")
    parsed = yaml.safe_load(value) if value.strip() else None
    if isinstance(parsed, bool) and value.strip().lower() not in ("true", "false"):
        parsed = value.strip()  # YAML 1.1 reads no/yes/on/off as booleans; `save_strategy=no` means "no"
    node[parts[-1]] = parsed
