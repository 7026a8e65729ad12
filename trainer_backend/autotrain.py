"""Read AutoTrain Advanced LLM configs (configs/llm_finetuning/*.yml) as LoRA Studio job specs.

`translate_autotrain` only rearranges keys into our JobSpec layout; `spec.parse_spec` validates afterwards.
AutoTrain merges `data`, `data.column_mapping` and `hub` into one flat parameter set and then applies
`params` on top; we do the same so that a key set in both places means what it means in AutoTrain.
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterable

from .errors import SpecError
from .spec_values import CHAT_TEMPLATES, OPTIMIZERS, RUN_NAME, SCHEDULERS, run_name_from
from .trainer_registry import PAIR_TRAINERS, TRAINERS

# AutoTrain's own llm-<name> trainers (AutoTrain has no kto or grpo task); each maps onto ours of the same name.
AUTOTRAIN_TRAINERS: tuple[str, ...] = tuple(t for t in ("sft", "generic", "dpo", "orpo", "reward") if t in TRAINERS)
_TRAINERS = AUTOTRAIN_TRAINERS
_PREFERENCE = PAIR_TRAINERS
_CONVERSATION_COLUMNS = ("messages", "conversations", "conversation", "chat")
_ALIASES = {"adamw_bnb_8bit": "adamw_8bit"}  # the same optimizer under its other transformers name
AUTOTRAIN_AUTO_LOGGING_STEPS = 25  # what AutoTrain's logging_steps=-1 ("auto") comes to, at most
_ENV_ONLY = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# AutoTrain key -> (our section, our key), copied unchanged when not null.
_DIRECT: dict[str, tuple[str, str]] = {
    "model": ("model", "base_model"), "data_path": ("data", "path"), "train_split": ("data", "train_split"),
    "valid_split": ("data", "valid_split"), "lora_r": ("lora", "r"), "lora_alpha": ("lora", "alpha"),
    "lora_dropout": ("lora", "dropout"), "lr": ("training", "learning_rate"), "epochs": ("training", "epochs"),
    "max_steps": ("training", "max_steps"), "batch_size": ("training", "batch_size"),
    "gradient_accumulation": ("training", "gradient_accumulation"), "warmup_ratio": ("training", "warmup_ratio"),
    "weight_decay": ("training", "weight_decay"), "max_grad_norm": ("training", "max_grad_norm"),
    "seed": ("training", "seed"), "save_total_limit": ("training", "save_total_limit"),
    "dpo_beta": ("training", "beta"), "repo_id": ("hub", "repo_id"),
}

# AutoTrain keys we cannot honour: silent while they hold a value that changes nothing, else one warning.
_UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "padding": (("right", None), "LoRA Studio always pads on the right"),
    "auto_find_batch_size": ((False, None), "set training.batch_size instead"),
    "merge_adapter": ((False, None), "the run pushes the adapter; push the merged model after it with "
                                      "`lora-studio push <job> --merged` (or Push merged in the Jobs tab)"),
    "unsloth": ((False, None), "Unsloth is not supported; training uses transformers + PEFT (same result, "
                                "without Unsloth's speed-up)"),
    "add_eos_token": ((True, None), "LoRA Studio handles the EOS token itself"),
    "model_ref": ((None,), "the DPO/ORPO reference model is always the base model"),
}


def is_autotrain_config(raw: dict) -> bool:
    """True for an AutoTrain config; False for our layout (which has a `model:` section and no `task`)."""
    if not isinstance(raw, dict) or isinstance(raw.get("model"), dict):
        return False
    task = raw.get("task")
    if isinstance(task, str) and task.startswith("llm"):
        return True
    # A non-LLM AutoTrain task still counts, so that translate_autotrain can say clearly it is unsupported.
    return {"base_model", "data", "params"} <= raw.keys() or ("task" in raw and "base_model" in raw)


def _flatten(raw: dict) -> tuple[dict[str, Any], dict[str, str]]:
    """AutoTrain's flat parameter set, plus the dotted path each key came from (for warnings)."""
    flat: dict[str, Any] = {}
    origin: dict[str, str] = {}

    def put(items: Iterable[tuple[Any, Any]], prefix: str, rename: dict[str, str] | None = None) -> None:
        for k, v in items:
            key = (rename or {}).get(str(k), str(k))
            flat[key], origin[key] = v, f"{prefix}{k}"

    for key, value in raw.items():
        if key in ("task", "params", "backend"):  # handled by translate_autotrain
            continue
        if key == "data" and isinstance(value, dict):
            mapping = value.get("column_mapping")
            put(((k, v) for k, v in value.items() if not (k == "column_mapping" and isinstance(v, dict))),
                "data.", {"path": "data_path"})
            if isinstance(mapping, dict):
                put(mapping.items(), "data.column_mapping.")
        elif key == "hub" and isinstance(value, dict):
            put(value.items(), "hub.")
        else:
            put([(key, value)], "", {"base_model": "model"})
    params = raw.get("params")
    if isinstance(params, dict):  # applied last, as AutoTrain does
        put(params.items(), "params.")
    elif params is not None:
        put([("params", params)], "")
    return flat, origin


def _is_auto(value: Any) -> bool:
    return str(value).strip() == "-1"  # AutoTrain writes -1 for 'choose automatically'


def _none_like(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", ""))


def _resolve_trainer(task: Any, flat: dict[str, Any], origin: dict[str, str], warnings: list[str]) -> str:
    """Trainer from the task suffix, overridden by params.trainer (AutoTrain applies params last)."""
    suffix = task.split("-", 1)[1] if isinstance(task, str) and "-" in task else None
    suffix = "generic" if suffix == "default" else suffix
    if suffix is not None and suffix not in _TRAINERS:
        raise SpecError(f"task '{task}': LoRA Studio supports llm-sft, llm-generic, llm-dpo, llm-orpo, llm-reward")
    if "trainer" not in flat:
        if suffix is None:  # AutoTrain's own default trainer is 'default' (continued pre-training)
            warnings.append("no trainer set (task 'llm' without params.trainer): using 'generic', AutoTrain's "
                            "default; use task: llm-sft for instruction tuning")
        return suffix or "generic"
    given = flat.pop("trainer")
    named = "generic" if str(given).lower() == "default" else str(given).lower()
    if named not in _TRAINERS:
        raise SpecError(f"{origin['trainer']} '{given}' is not supported; use sft, default, dpo, orpo or reward")
    if suffix and named != suffix:
        warnings.append(f"{origin['trainer']} '{given}' overrides task '{task}' (AutoTrain applies params last)")
    return named


def translate_autotrain(raw: dict) -> tuple[dict, list[str]]:
    """Rearrange an AutoTrain LLM config into our JobSpec layout (unvalidated) and explain what was dropped."""
    task = raw.get("task")
    if task is not None and not (isinstance(task, str) and task.startswith("llm")):
        raise SpecError(f"task '{task}' is an AutoTrain task LoRA Studio cannot run; only llm, llm-sft, "
                        "llm-generic, llm-dpo, llm-orpo and llm-reward configs can be imported")
    flat, origin = _flatten(raw)
    warnings: list[str] = []
    take = flat.pop

    def ignored(key: str, reason: str) -> None:
        warnings.append(f"{origin.get(key, key)} is ignored: {reason}")

    if raw.get("backend") is not None:
        warnings.append("backend is ignored: training runs where LoRA Studio runs; for HF Jobs hardware set "
                        "compute.backend: hf_jobs with compute.flavor")
    trainer = _resolve_trainer(task, flat, origin, warnings)
    out: dict[str, Any] = {k: {} for k in ("model", "data", "lora", "lengths", "training", "hub")}
    model, data, lora, lengths, training, hub = out.values()
    training["trainer"] = trainer
    for key, (section, dst) in _DIRECT.items():
        if flat.get(key) is not None:
            out[section][dst] = take(key)

    if take("use_flash_attention_2", False) is True:
        model["attn_implementation"] = "flash_attention_2"
    if flat.get("output_dir") is not None:  # not an AutoTrain key: the CLI's --output-dir arrives this way
        out["output_dir"] = str(take("output_dir"))
    project = take("project_name", None)
    if project is not None:
        name = str(project)
        if not RUN_NAME.fullmatch(name):
            name = run_name_from(name)
            warnings.append(f"{origin['project_name']} '{project}' is not a valid run name; using '{name}'")
        out["project_name"] = name
    if "chat_template" in flat:
        template = "none" if _none_like(given := take("chat_template")) else str(given).lower()
        if template not in CHAT_TEMPLATES:
            warnings.append(f"{origin['chat_template']} '{given}' is not supported; using 'tokenizer'")
            template = "tokenizer"
        data["chat_template"] = template
    text_col, prompt_col, rejected_col = (take(k, None) for k in
                                          ("text_column", "prompt_text_column", "rejected_text_column"))
    columns: dict[str, Any] = {}
    if trainer in _PREFERENCE:
        data["format"] = "preference"
        pairs = (("prompt", prompt_col), ("chosen", text_col), ("rejected", rejected_col))
        columns = {role: col for role, col in pairs if col is not None}
    else:
        # AutoTrain renders text_column through the chat template whenever one is set (sft and default
        # trainers), so then it holds conversations whatever its name.
        templated = data.get("chat_template") not in (None, "none")  # AutoTrain without one renders nothing
        if text_col is not None and (templated or str(text_col).lower() in _CONVERSATION_COLUMNS):
            columns["messages"] = text_col
        elif text_col is not None:
            columns["text"] = text_col
            if trainer == "sft":
                data["format"] = "text"
        for key, col in (("prompt_text_column", prompt_col), ("rejected_text_column", rejected_col)):
            if col is not None:
                ignored(key, f"the {trainer} trainer does not use it")
    if columns:
        data["column_mapping"] = columns
    # Prompt/completion limits only matter to preference trainers (in AutoTrain too).
    for key in ("block_size", "model_max_length", "max_prompt_length", "max_completion_length"):
        value = take(key, None)
        if value is None:
            continue
        if _is_auto(value):
            ignored(key, "-1 (automatic) is not supported; using LoRA Studio's default")
        elif isinstance(value, list):
            ignored(key, "a list of lengths is not supported; set one number")
        elif key in ("max_prompt_length", "max_completion_length") and trainer not in _PREFERENCE:
            ignored(key, f"it only applies to preference trainers (dpo, orpo, reward), not {trainer}")
        else:
            lengths[key] = value
    lora["enabled"] = bool(take("peft", False))  # AutoTrain's default is full fine-tuning
    if origin.get("peft") is None:
        warnings.append("params.peft is not set: full fine-tuning was chosen (AutoTrain's default); "
                        "set peft: true to train a LoRA adapter")
    modules = take("target_modules", None)
    if isinstance(modules, (list, tuple)):
        modules = ",".join(str(m) for m in modules)
    if not _none_like(modules):
        lora["target_modules"] = str(modules).strip()
    if "quantization" in flat:
        quant = "none" if _none_like(given := take("quantization")) else str(given).lower()
        if quant != "none" and not lora["enabled"]:
            ignored("quantization", "AutoTrain only quantizes when peft is true")
        else:
            training["quantization"] = quant
    backend = take("distributed_backend", None)
    if backend in ("ddp", "deepspeed"):  # AutoTrain's two; ours has the same names (and fsdp)
        training["distributed"] = backend
    elif backend is not None:
        ignored("distributed_backend", f"'{backend}' is not supported (use ddp or deepspeed)")
    for key, allowed in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS)):
        value = take(key, None)
        if value is not None:
            value = _ALIASES.get(str(value), str(value))
            if value in allowed:
                training[key] = value
            else:
                ignored(key, f"'{value}' is not supported (use one of {', '.join(allowed)})")
    if "mixed_precision" in flat:
        precision = take("mixed_precision")
        training["mixed_precision"] = "no" if _none_like(precision) else str(precision).lower()
    logging_steps = take("logging_steps", None)
    if logging_steps is not None and not _is_auto(logging_steps):
        training["logging_steps"] = logging_steps
    strategy = take("eval_strategy", take("evaluation_strategy", None))  # older configs: the long name
    if _none_like(data.get("valid_split")):
        training["eval_strategy"] = "no"  # AutoTrain never evaluates without a validation split
    elif strategy is not None:
        training["eval_strategy"] = strategy
        if strategy == "steps":  # transformers falls back to logging_steps; AutoTrain's auto value is <= 25
            training["eval_steps"] = training["logging_steps"] if "logging_steps" in training \
                else AUTOTRAIN_AUTO_LOGGING_STEPS
    save_strategy = take("save_strategy", None)  # older AutoTrain versions only
    if save_strategy is not None:
        training["save_strategy"] = save_strategy
        if save_strategy == "steps":
            training["save_steps"] = take("save_steps", 500)  # the transformers default AutoTrain inherits
    if take("disable_gradient_checkpointing", False) is True:
        training["gradient_checkpointing"] = False
    if "log" in flat:
        log = "none" if _none_like(given := take("log")) else str(given).lower()
        if log in ("none", "tensorboard", "trackio"):
            training["log"] = log
        else:
            ignored("log", f"'{log}' is not supported; metrics go to events.jsonl (use tensorboard or none)")
    # The token is passed on untouched (parse_spec expands ${VAR}) and never quoted in a warning.
    push = hub["push_to_hub"] = bool(take("push_to_hub", False))
    token, username = take("token", None), take("username", None)
    unset_ref = isinstance(token, str) and (m := _ENV_ONLY.fullmatch(token)) and m.group(1) not in os.environ
    # AutoTrain reads ${VAR} with os.environ.get, so an unset variable means "no token" rather than an
    # error; keep that when nothing is pushed (a set token is still kept for gated downloads).
    if token and not (unset_ref and not push):
        hub["token"] = token
    if push and username and "repo_id" not in hub:
        hub["repo_id"] = f"{username}/{out.get('project_name') or 'lora-studio-run'}"

    for key, value in flat.items():  # everything left: one warning per key that would change behaviour
        if key in _UNSUPPORTED:
            harmless, reason = _UNSUPPORTED[key]
            if value not in harmless:
                ignored(key, reason)
        elif value is not None:
            ignored(key, "LoRA Studio has no equivalent setting")
    return {k: v for k, v in out.items() if v or k in ("model", "data")}, warnings
