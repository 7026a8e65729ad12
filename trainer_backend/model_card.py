"""The README.md (model card) pushed with an adapter or a merged model.

Built only from what the job recorded (spec.yaml, data_report.json, adapter/lora_studio.json): Hub metadata
(`base_model`, `library_name`, `tags`, `datasets`, `license`, `pipeline_tag`), the data and template used, the
hyperparameters, the final losses and eval metrics, and a copy-paste snippet that chats with the model using the
chat template saved with the tokenizer and stops at the template's end-of-turn marker.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from huggingface_hub import ModelCard, ModelCardData

from .spec import JobSpec
from .trainer_registry import TrainerInfo, trainer_info
from .training.adapter_meta import AdapterMeta

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?", re.ASCII)
_METRIC_SKIP = ("_runtime", "_per_second", "total_flos", "num_tokens")


def is_hub_id(value: Optional[str]) -> bool:
    """A Hub repo id (e.g. `Qwen/Qwen2.5-0.5B`), as opposed to a local file or folder."""
    from .data.loading import looks_local

    if not value:
        return False
    return not looks_local(value) and not Path(value).expanduser().exists() \
        and HUB_ID.fullmatch(value) is not None and "--" not in value and ".." not in value


def display_name(value: str) -> str:
    """A Hub id as it is; a local path as its last component (no home folders in public text)."""
    return value if is_hub_id(value) else Path(value.rstrip("/")).name or value


def card_metadata(meta: AdapterMeta, spec: Optional[JobSpec], license: Optional[str] = None,
                  merged: bool = False) -> ModelCardData:
    """`spec` is None for an adapter whose job spec is not at hand (only what the adapter recorded is used)."""
    base, trainer = meta.base_model, meta.trainer
    data_path = spec.data.path if spec else ""
    is_adapter = meta.lora and not merged
    tags = ["lora-studio", trainer, "trl"]
    tags += ["peft", "lora"] if is_adapter else (["merged-lora"] if merged else ["full-finetune"])
    if meta.quantization != "none" and is_adapter:
        tags.append("qlora")
    return ModelCardData(
        base_model=base if is_hub_id(base) else None,  # the Hub rejects anything but a repo id here
        library_name="peft" if is_adapter else "transformers",
        license=license,
        datasets=[data_path] if is_hub_id(data_path) else None,
        pipeline_tag=trainer_info(trainer).pipeline_tag,
        tags=tags,
    )


def build_model_card(repo_id: str, meta: AdapterMeta, spec: Optional[JobSpec], report: Optional[dict[str, Any]],
                     license: Optional[str] = None, plot_path: Optional[str] = None, plot_note: Optional[str] = None,
                     end_of_turn_is_token: bool = True, merged_from: Optional[str] = None,
                     evaluation: Optional[dict[str, Any]] = None) -> str:
    """The full README.md text. `merged_from` is the adapter repo when this card describes a merged model."""
    merged = merged_from is not None
    data = card_metadata(meta, spec, license, merged)
    base, trainer = meta.base_model, meta.trainer
    base_link = f"[{base}](https://huggingface.co/{base})" if is_hub_id(base) \
        else f"`{display_name(base)}` (a local model)"
    what = ("the LoRA adapter merged into its base model" if merged
            else "a LoRA adapter" if meta.lora else "a fully fine-tuned model")
    info = trainer_info(trainer)
    parts = [f"# {repo_id.split('/')[-1]}", "",
             f"{what[0].upper()}{what[1:]} for {base_link}, trained with LoRA Studio "
             f"using the `{trainer}` trainer ({info.title}). {info.card_summary}{_reference_note(info, meta)}"]
    if merged:
        parts.append(f"The adapter alone is in [{merged_from}](https://huggingface.co/{merged_from}).")
    if not is_hub_id(base) and not merged:
        parts.append("The base model was a local folder, so `base_model_name_or_path` in `adapter_config.json` "
                     "points to a path on the training machine: pass the base explicitly when loading.")
    parts += ["", "## Use it", "", _usage(repo_id, meta, end_of_turn_is_token, merged), ""]
    parts += ["## Training loss", ""]
    parts += [f"![Training and evaluation loss]({plot_path})" if plot_path else f"_{plot_note or 'no plot'}_", ""]
    parts += _results(meta.metrics)
    parts += _evaluation(evaluation)
    parts += _data_section(spec, report, meta)
    parts += _rewards(spec, meta.metrics) if spec and spec.grpo.rewards else []
    parts += _hyperparameters(spec) if spec else []
    if not merged:  # the training records live in the adapter repo only
        parts += ["## Files", "",
                  "- `training/spec.yaml`: the job spec as run (secrets removed); "
                  "`python -m trainer_backend train spec.yaml` reproduces the run",
                  "- `training/metrics.json`: final metrics and the loss history",
                  "- `training/data_report.json`: the dataset report (formats, counts, truncation)", ""]
    text = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(parts)
    validate_card(text)
    return text


def _reference_note(info: TrainerInfo, meta: AdapterMeta) -> str:
    if not info.reference_model:
        return ""
    return (" The reference model was the base itself (the adapter turned off)." if meta.lora
            else " The reference model was a frozen copy of the base.")


def validate_card(text: str) -> ModelCard:
    """Parse the card as the Hub library does; raises ValueError when its metadata is not valid YAML metadata."""
    card = ModelCard(text, ignore_metadata_errors=False)
    if not isinstance(card.data, ModelCardData) or not card.data.to_dict():
        raise ValueError("model card has no metadata block")
    return card


def _usage(repo_id: str, meta: AdapterMeta, eot_is_token: bool, merged: bool) -> str:
    trainer = meta.trainer
    local_base = not is_hub_id(meta.base_model)
    is_adapter = meta.lora and not merged
    lines = ["```python"]
    info = trainer_info(trainer)
    if info.head == "seq_cls":
        lines += ["import torch",
                  "from peft import AutoPeftModelForSequenceClassification" if is_adapter else
                  "from transformers import AutoModelForSequenceClassification",
                  "from transformers import AutoTokenizer", "",
                  f'repo_id = "{repo_id}"',
                  ("model = AutoPeftModelForSequenceClassification.from_pretrained(repo_id, num_labels=1)"
                   if is_adapter else "model = AutoModelForSequenceClassification.from_pretrained(repo_id)"),
                  "tokenizer = AutoTokenizer.from_pretrained(repo_id)",
                  'messages = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]',
                  "inputs = tokenizer.apply_chat_template(messages, return_dict=True, return_tensors=\"pt\")",
                  "with torch.no_grad():",
                  "    print(model(**inputs).logits[0, 0].item())  # higher = preferred", "```"]
        return _notes(lines, local_base and is_adapter)
    lines += ["from peft import AutoPeftModelForCausalLM" if is_adapter else
              "from transformers import AutoModelForCausalLM",
              "from transformers import AutoTokenizer", "",
              f'repo_id = "{repo_id}"',
              ("model = AutoPeftModelForCausalLM.from_pretrained(repo_id)  # the base named in adapter_config.json"
               " + this adapter" if is_adapter else "model = AutoModelForCausalLM.from_pretrained(repo_id)"),
              "tokenizer = AutoTokenizer.from_pretrained(repo_id)  # carries the chat template used in training", ""]
    eot = meta.end_of_turn
    stop = ""
    if eot and eot_is_token:
        stop = f', eos_token_id=[tokenizer.convert_tokens_to_ids("{eot}"), tokenizer.eos_token_id]'
    elif eot:
        stop = f", stop_strings=[{eot!r}], tokenizer=tokenizer"
    prompt_template = meta.single_turn_prompt()
    if info.documents or (meta.chat_template == "none" and not prompt_template):
        lines += ['inputs = tokenizer("Once upon a time", return_tensors="pt")']
    elif prompt_template:
        lines += [f"prompt = {_prompt_example(prompt_template)!r}  # the prompt template used in training",
                  'inputs = tokenizer(prompt, return_tensors="pt")']
    else:
        lines += ['messages = [{"role": "user", "content": "Hello! What can you do?"}]',
                  "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,",
                  '                                       return_tensors="pt")']
    lines += [f"output = model.generate(**inputs, max_new_tokens=128{stop})"
              + ("  # stop at the end of the turn" if stop else ""),
              'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))', "```"]
    return _notes(lines, local_base and is_adapter)


def _notes(lines: list[str], local_base: bool) -> str:
    notes = ["", "The repo is private by default: log in first (`hf auth login`) or set `HF_TOKEN`."]
    if local_base:
        notes.append("The base model was a local folder: load it yourself and wrap it with "
                     "`peft.PeftModel.from_pretrained(base, repo_id)` instead of the `AutoPeft...` class.")
    return "\n".join(lines + notes)


def _prompt_example(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: f"<{m.group(1)}>", template)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _cell(text: str) -> str:
    """Escape what would break a markdown table row (`<|im_end|>` has pipes; newlines end the row)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _results(metrics: dict[str, Any]) -> list[str]:
    keep = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and not any(s in k for s in _METRIC_SKIP)}
    if not keep:
        return []
    first = [k for k in ("train_loss", "eval_loss") if k in keep]
    order = first + sorted(k for k in keep if k not in first)
    return ["## Results", "", "| metric | value |", "|---|---|", *[f"| {k} | {_fmt(keep[k])} |" for k in order], ""]


def _evaluation(raw: Optional[dict[str, Any]]) -> list[str]:
    """The evaluation report (evaluation.json): the verdict, base vs fine-tuned on held-out data as the Jobs tab
    shows it (rounded, percentages, n and the change's 95 % interval per metric), the general tasks, the judge.
    Metrics only, no rows: they are user data."""
    from .evaluation.record import EvaluationRecord

    if not raw:
        return []
    record = EvaluationRecord.from_dict(raw)
    parts = ["## Evaluation", ""]
    if record.verdict:
        parts += [f"**{record.verdict['text']}**", ""]
    parts += _held_out(record.held_out)
    parts += _general(record.general_scores)
    if record.judge:
        from .evaluation.judge import JudgeResult

        from .evaluation.judge import is_endpoint

        name = str(record.judge.get("judge"))
        judged = JudgeResult.from_dict({**record.judge, "judge": name if is_endpoint(name) else display_name(name)})
        parts += ["### Judge", "", judged.summary(),
                  "Each prompt was judged in both orders (fine-tuned first, then base first); a win needs both.", ""]
    parts += [f"- {_cell(n)}" for n in record.notes] + ([""] if record.notes else [])
    return parts if len(parts) > 2 else []


def _held_out(report: Optional[dict[str, Any]]) -> list[str]:
    from .evaluation.tools import is_tool_metric

    if not report or not report.get("fine_tuned"):
        return []
    rows, source = report.get("rows", "?"), report.get("source")
    if not report.get("table"):  # saved before evaluation.json kept its table
        base = report.get("base", {})
        table = [f"| {k} | {_fmt(base.get(k))} | {_fmt(v)} |" for k, v in report["fine_tuned"].items()]
        return [f"Held-out rows: {rows} (base model = same weights, adapter off).", "",
                "| metric | base | fine-tuned |", "|---|---|---|", *table, ""]
    where = (f"{rows} rows of `{display_name(source)}`, a file given at evaluation (not the job's held-out split)"
             if source else f"{rows} rows of the job's held-out validation split (rows training never saw)")
    text = [f"Base vs fine-tuned on {where}; the base is the same weights with the adapter off."]
    if any(is_tool_metric(k) for k in report["fine_tuned"]):
        text.append("Tool calling: each conversation's last assistant turn is the target, answered with the "
                    "conversation's tool schemas; each percentage is over n, the rows that metric applies to.")
    table = [f"| {_cell(r['metric'])} | {_cell(r['base'])} | {_cell(r['fine-tuned'])} | "
             f"{_cell(r.get('change', '—'))} | {_cell(r['n'])} |" for r in report["table"]]
    return [" ".join(text), "", "| metric | base | fine-tuned | change (95 % CI) | n |", "|---|---|---|---|---|",
            *table, ""]


def _general(scores: list[Any]) -> list[str]:
    """General-ability tasks (lm-evaluation-harness), base vs fine-tuned: what the adapter cost elsewhere."""
    from .evaluation.forgetting import general_change

    if not scores:
        return []
    rows = []
    for score in scores:
        change = general_change(score)
        mark = " ⚠ drop beyond noise" if change.worse else ""
        rows.append(f"| {_cell(change.task)} | {score.metric} | {score.base:.4g} | {score.fine_tuned:.4g} | "
                    f"{_cell(change.text)}{mark} | {score.n} |")
    return ["### General tasks (did it forget?)", "",
            "Run with [lm-evaluation-harness](https://github.com/EleutherAI/lm-evaluation-harness), the adapter "
            "loaded through its PEFT support; base = the adapter switched off.", "",
            "| task | metric | base | fine-tuned | change (95 % CI) | n |", "|---|---|---|---|---|---|", *rows, ""]


def _data_section(spec: Optional[JobSpec], report: Optional[dict[str, Any]], meta: AdapterMeta) -> list[str]:
    from .data.report import DatasetReport

    rows: list[tuple[str, str]] = []
    if spec is not None:
        d = spec.data
        if is_hub_id(d.path):
            source = f"[{d.path}](https://huggingface.co/datasets/{d.path})" + (
                f" (`{d.config_name}`)" if d.config_name else "")
        else:
            source = ", ".join(f"`{display_name(p.strip())}`" for p in d.path.split(",")) + " (local)"
        rows += [("source", source), ("train split", f"`{d.train_split}`"),
                 ("validation split", f"`{d.valid_split}`" if d.valid_split else "none")]
    typed = DatasetReport.from_dict(report) if report else None
    if typed is not None:
        reason = f" — {typed.format.reason}" if typed.format.reason else ""
        rows.append(("format", f"{typed.format.format}{reason}"))
    template = (typed.chat_template if typed else None) or meta.chat_template or (spec.data.chat_template if spec
                                                                                    else None)
    rows.append(("chat template", f"`{template or '?'}`"))
    template_text = meta.chat_template_source or (typed.chat_template_source if typed else None)
    if template_text:  # the text the repo's tokenizer carries, so apply_chat_template renders what trained
        rows.append(("template text", template_text))
    end_of_turn = (typed.end_of_turn if typed else None) or meta.end_of_turn
    if end_of_turn:
        rows.append(("end of turn", f"`{end_of_turn}`"))
    if spec is not None and spec.data.system_prompt:
        rows.append(("system prompt", spec.data.system_prompt))
    if spec is not None and spec.data.max_rows:
        rows.append(("max rows", str(spec.data.max_rows)))
    for name, split in (typed.splits if typed else {}).items():
        tokens = f"tokens median {split.tokens.median}, max {split.tokens.max}" if split.tokens else "no token counts"
        rows.append((f"{name} rows", f"{split.rows_used} used of {split.rows_read} read; {split.truncated} truncated, "
                                     f"{split.dropped} dropped; {tokens}"))
    return ["## Data", "", "| | |", "|---|---|", *[f"| {k} | {_cell(v)} |" for k, v in rows], ""]


_HYPERPARAMETERS = ("trainer", "learning_rate", "epochs", "max_steps", "batch_size", "gradient_accumulation",
                    "scheduler", "warmup_ratio", "optimizer", "weight_decay", "max_grad_norm", "mixed_precision",
                    "quantization", "packing", "completion_only_loss", "seed")


def _rewards(spec: JobSpec, metrics: dict[str, Any]) -> list[str]:
    """The reward functions a GRPO adapter was trained with, and the mean score each had at the end."""
    rows = []
    for r in spec.grpo.rewards:
        reads = f"column `{r.column}`" if r.column else \
            "the completion's tool calls vs the row's" if r.type == "tool_call" else "the completion"
        setting = r.pattern or (f"{r.min_length or 0}-{r.max_length or '∞'} {r.unit}" if r.type == "length" else "") \
            or ", ".join([*(f"+{w}" for w in r.all_of), *(f"-{w}" for w in r.none_of)]) or \
            (f"`{Path(r.file).name}`:{r.function}" if r.file else "")
        rows.append(f"| {_cell(r.label)} | {r.type} | {_fmt(r.weight)} | {reads} | {_cell(setting)} | "
                    f"{_fmt(metrics.get(f'train_rewards/{r.label}/mean', '—'))} |")
    return ["## Rewards", "", "Completions were scored by these functions; the total reward is their weighted sum.",
            "", "| reward | type | weight | reads | setting | last mean |", "|---|---|---|---|---|---|", *rows, ""]


def _hyperparameters(spec: JobSpec) -> list[str]:
    tr, lora = spec.training, spec.lora
    rows: list[tuple[str, Any]] = [(k, getattr(tr, k)) for k in _HYPERPARAMETERS if getattr(tr, k) is not None]
    rows.append(("effective batch size (per device)", tr.batch_size * tr.gradient_accumulation))
    info = trainer_info(tr.trainer)
    if info.uses_beta:
        rows.append(("beta", tr.beta))
    if info.uses_dpo_loss_type:
        rows.append(("dpo_loss_type", tr.dpo_loss_type))
    if info.rows == "prompts":
        rows += [(f"grpo.{k}", v) for k, v in spec.grpo.model_dump(exclude={"rewards"}).items()]
    if info.rows == "feedback":
        rows += [(f"kto.{k}", v) for k, v in spec.kto.model_dump().items() if v is not None]
    if lora.enabled:
        rows += [(f"lora.{k}", getattr(lora, k)) for k in ("r", "alpha", "dropout", "target_modules", "use_dora",
                                                           "use_rslora")]
    rows += [(f"lengths.{k}", v) for k, v in spec.lengths.model_dump().items() if v is not None]
    return ["## Training hyperparameters", "", "| parameter | value |", "|---|---|",
            *[f"| {k} | {_cell(_fmt(v))} |" for k, v in rows], ""]
