"""Preference rows -> what DPO / ORPO / reward trainers consume, with our prompt/completion limits applied.
(KTO and GRPO rows reuse the rendering: rl_rows.py.)

DPO and ORPO take text (prompt rendered up to the assistant header; chosen/rejected = the rendered assistant
turn incl. end-of-turn and one EOS), because TRL 1.16 re-tokenises them itself and no longer enforces prompt
or completion limits. The reward trainer takes token ids (`chosen_ids` / `rejected_ids`: prompt + answer).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from .encode import DROPPED_NO_LOSS, DROPPED_TOO_LONG, OK, TRUNCATED, EncodedRows, EncodeSettings
from .issues import RowError
from .chat_render import common_prefix_length, render_template


def _plain(messages: list[dict]) -> str:
    return "\n\n".join(m["content"] for m in messages if m["role"] != "assistant") + "\n"


def render_preference(example: dict, tokenizer: Any, template: Optional[str]) -> tuple[str, str, str]:
    """(prompt_text, chosen_text, rejected_text); each completion ends with exactly one EOS."""
    prompt, (chosen, rejected) = render_answers(example["prompt"], [example["chosen"], example["rejected"]],
                                                tokenizer, template)
    return prompt, chosen, rejected


def render_answers(prompt: list[dict], answers: list[list[dict]], tokenizer: Any,
                   template: Optional[str]) -> tuple[str, list[str]]:
    """The prompt's text up to where the model starts answering, and each answer's text from there (incl. its
    end-of-turn marker), each ending with exactly one EOS: what DPO, ORPO and KTO get."""
    eos = tokenizer.eos_token or ""
    if template is None:
        texts = [_plain(prompt)] + ["".join(m["content"] for m in answer) for answer in answers]
    else:
        try:
            head, _ = render_template(tokenizer, template, prompt, add_generation_prompt=True)
            fulls = [render_template(tokenizer, template, prompt + answer)[0] for answer in answers]
            # The answers start where the rendering leaves the generation prompt (as in SFT, chat_render.py):
            # Nemotron's prompt ends "<think>\n", its rendered turn "<think></think>": the answer is "</think>...".
            cut = min(common_prefix_length(head, full) for full in fulls)
            texts = [fulls[0][:cut]] + [full[cut:].rstrip() for full in fulls]
            if not all(m["content"] in texts[0] for m in prompt if isinstance(m.get("content"), str)):
                raise RowError("the chat template renders the prompt differently once an answer follows",
                               "prompt", "choose a shipped template (data.chat_template: chatml)")
        except RowError:
            raise
        except Exception as exc:  # the template's own raise_exception()
            raise RowError(f"chat template rejected the conversation: {exc}") from None
    return strip_added_bos(texts[0], tokenizer), [t if t.endswith(eos) else t + eos for t in texts[1:]]


def render_prompt(prompt: list[dict], tokenizer: Any, template: Optional[str],
                  tools: Optional[list[dict]] = None) -> str:
    """The text a model generates from for this prompt (the generation prompt included), as the trainer
    tokenises it: what GRPO samples completions from, and what chat sends. `tools`: schemas the template renders."""
    if template is None:
        return strip_added_bos(_plain(prompt), tokenizer)
    try:
        head, _ = render_template(tokenizer, template, prompt, add_generation_prompt=True, tools=tools)
    except Exception as exc:  # the template's own raise_exception()
        raise RowError(f"chat template rejected the conversation: {exc}") from None
    return strip_added_bos(head, tokenizer)


def strip_added_bos(text: str, tokenizer: Any) -> str:
    """TRL tokenises text with special tokens: keep one BOS, not two."""
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos) and _adds_bos(tokenizer):
        return text[len(bos):]
    return text


def _adds_bos(tokenizer: Any) -> bool:
    ids = tokenizer("a", verbose=False)["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def keep_tokens(text: str, tokenizer: Any, limit: Optional[int], from_end: bool) -> tuple[str, int, bool]:
    """Cut `text` to `limit` tokens at a token boundary (from the left when from_end). Returns text, n, cut?"""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    n = len(enc["input_ids"])
    if not limit or n <= limit:
        return text, n, False
    offsets = enc["offset_mapping"]
    if from_end:
        return text[offsets[n - limit][0]:], limit, True
    return text[: offsets[limit - 1][1]], limit, True


def fit_answers(prompt: str, answers: list[str], tokenizer: Any,
                s: EncodeSettings) -> tuple[int, str, list[str], int]:
    """The prompt and completion limits, then the block budget, for a prompt and its answers (a pair's two, KTO's
    one): (outcome as encode.py names it, prompt, answers, full length in tokens before the block budget)."""
    prompt, p_len, p_cut = keep_tokens(prompt, tokenizer, s.max_prompt_length, from_end=True)
    kept = [keep_tokens(a, tokenizer, s.max_completion_length, from_end=False) for a in answers]
    answers, total = [k[0] for k in kept], p_len + max(k[1] for k in kept)
    cut = p_cut or any(k[2] for k in kept)
    if total > s.block_size:
        if s.too_long == "drop":
            return DROPPED_TOO_LONG, prompt, answers, total
        if p_len >= s.block_size:
            return DROPPED_NO_LOSS, prompt, answers, total
        answers = [keep_tokens(a, tokenizer, s.block_size - p_len, from_end=False)[0] for a in answers]
        cut = True
    return (TRUNCATED if cut else OK), prompt, answers, total


def encode_preferences(examples: list[dict], tokenizer: Any, s: EncodeSettings, template: Optional[str],
                       as_ids: bool, on_error: Callable[[int, RowError], None]) -> EncodedRows:
    """DPO / ORPO rows (prompt, chosen, rejected texts), or the reward trainer's (chosen_ids, rejected_ids)."""
    out = EncodedRows()
    for i, ex in enumerate(examples):
        try:
            prompt, chosen, rejected = render_preference(ex, tokenizer, template)
        except RowError as exc:
            on_error(i, exc)
            out.failed()
            continue
        outcome, prompt, (chosen, rejected), total = fit_answers(prompt, [chosen, rejected], tokenizer, s)
        out.lengths.append(total)
        out.outcomes.append(outcome)
        if outcome not in (OK, TRUNCATED):
            continue
        if as_ids:
            ids = [tokenizer(prompt + c, add_special_tokens=False, verbose=False)["input_ids"][: s.block_size]
                   for c in (chosen, rejected)]
            row: dict[str, Any] = {"chosen_ids": ids[0], "rejected_ids": ids[1]}
        else:
            row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        if ex.get("margin") is not None:
            row["margin"] = float(ex["margin"])
        out.rows[i] = row
    return out
