"""An optional judge for the report: for each held-out prompt, which answer is better, the base's or the
fine-tuned one's? The result is a pairwise win rate of the fine-tuned model.

Judges prefer whichever answer is shown first (or second) more often than chance, so every prompt is asked in
BOTH orders: fine-tuned as A, then base as A. A prompt is a win only when both orders pick the fine-tuned answer,
a loss only when both pick the base; anything else is a tie, so position bias lowers confidence instead of
flattering either side. The judge is a causal LM (a folder or a Hub id: the verdict is the likelier of the next
tokens "A" and "B", deterministic even for a tiny random model) or an OpenAI-compatible endpoint (a URL).
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Optional

from ..redaction import redact
from .stats import wilson

JUDGE_TEMPLATE = """You are comparing two answers to the same question. Decide which answer is better: more correct, \
more helpful and clearer. The order of the answers and their length must not decide.

Question:
{question}

Answer A:
{answer_a}

Answer B:
{answer_b}

Which answer is better? Reply with exactly one letter: "A" or "B"."""

ENDPOINT_TIMEOUT_S = 60.0
RETRIES = 2  # on 429, 5xx and dropped connections: the next try waits 1 s, then 2 s
_VERDICT = re.compile(r"(?<![A-Za-z0-9])([AB])(?![A-Za-z0-9])")


@dataclass
class JudgeItem:
    prompt: str       # the user question (last user message)
    base: str         # base model's answer
    fine_tuned: str   # fine-tuned model's answer


@dataclass
class JudgeResult:
    judge: str                   # a model id / folder, or the endpoint URL (never a key)
    template: str                # JUDGE_TEMPLATE as used
    prompts: int
    wins: int                    # fine-tuned preferred in both orders
    losses: int                  # base preferred in both orders
    ties: int                    # the orders disagreed, or a verdict was unusable
    win_rate: float              # (wins + 0.5 * ties) / prompts
    ci: Optional[list[float]]    # 95 % Wilson interval of win_rate, None below 5 prompts
    position_consistency: float  # share of prompts whose two verdicts pick the same answer
    first_position_rate: float   # share of the verdicts given that picked position A (0.5 when none was given)
    examples: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "JudgeResult":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def summary(self) -> str:
        """One plain sentence for the report."""
        unusable = sum(1 for e in self.examples if e["outcome"] == "tie"
                       and None in (e["verdict_tuned_first"], e["verdict_base_first"]))
        why = ("orders disagreed" if not unusable else "no usable verdict" if unusable == self.ties
               else f"{self.ties - unusable} where the orders disagreed, {unusable} without a usable verdict")
        ties = f"{self.ties} tie{'s' if self.ties != 1 else ''}" + (f" ({why})" if self.ties else "")
        ci = f" [{self.ci[0]:.0%}, {self.ci[1]:.0%}]".replace("%", " %") if self.ci else ""
        text = (f"Judge ({self.judge}) preferred the fine-tuned answer on {self.wins} of {self.prompts} prompts, "
                f"the base on {self.losses}, {ties}: win rate {self.win_rate * 100:.1f} %{ci}")
        if self.position_consistency < 1 and abs(self.first_position_rate - 0.5) >= 0.25:
            first = self.first_position_rate >= 0.5
            share = self.first_position_rate if first else 1 - self.first_position_rate
            text += (f"; it picked the answer shown {'first' if first else 'second'} in {share:.0%} of its "
                     "verdicts (strong position bias)").replace("%", " %")
        return text + "."


def is_endpoint(judge: str) -> bool:
    """A URL (http:// or https://) names an OpenAI-compatible endpoint; anything else a model."""
    return judge.strip().lower().startswith(("http://", "https://"))


def render_prompt(question: str, answer_a: str, answer_b: str, max_answer_chars: int = 4000) -> str:
    """JUDGE_TEMPLATE filled in, each answer cut to max_answer_chars (a rambling answer must not push the
    question out of the judge's context)."""
    def cut(text: str) -> str:
        return text if len(text) <= max_answer_chars else text[:max_answer_chars] + " [...]"
    return JUDGE_TEMPLATE.format(question=question, answer_a=cut(answer_a), answer_b=cut(answer_b))


def parse_verdict(reply: Optional[str]) -> Optional[str]:
    """The first standalone A or B in a reply ("A", "A.", "**B**", "Answer: B"), else None."""
    match = _VERDICT.search(reply or "")
    return match.group(1) if match else None


def _public_label(judge: str, key: Optional[str]) -> str:
    """The judge as shown: an endpoint URL without user:password@ and without the key."""
    return redact(re.sub(r"(?<=//)[^/@]*@", "", judge.strip()), key)


def _letter_ids(tok: Any) -> dict[str, list[int]]:
    """The token ids that spell each letter as the next token: the bare letter and the leading-space form
    (after "Answer:" most tokenizers continue with " A")."""
    ids: dict[str, list[int]] = {}
    for letter in ("A", "B"):
        forms = []
        for text in (letter, " " + letter):
            encoded = tok.encode(text, add_special_tokens=False)
            if len(encoded) == 1 or (text == letter and len(encoded) > 1):
                forms.append(encoded[0])  # a bare letter split into pieces: its first piece starts it
        ids[letter] = sorted(set(forms))
    if set(ids["A"]) & set(ids["B"]):
        raise ValueError("the judge's tokenizer does not tell the letters A and B apart")
    return ids


def _local_verdict(model: Any, tok: Any, text: str, letters: dict[str, list[int]]) -> Optional[str]:
    """Score one rendered judge prompt: the letter whose best form has the higher next-token log-probability."""
    import torch

    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                       tokenize=False)
        ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    else:
        ids = tok(text + "\nAnswer:", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(input_ids=ids.to(model.device)).logits[0, -1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    a, b = (max(float(logprobs[i]) for i in letters[letter]) for letter in ("A", "B"))
    return "A" if a > b else "B" if b > a else None


def _load_local(judge: str, token: Optional[str]) -> tuple[Any, Any]:
    """The judge model and tokenizer through the project's one model loader (same Hub access rules)."""
    import torch
    from transformers import AutoTokenizer

    from ..training.adapter_meta import ModelLoad
    from ..training.model_loading import hub_kwargs, load_model, serving_device

    device = serving_device()
    dtype = "bfloat16" if device != "cpu" and torch.cuda.is_bf16_supported() else "float32"
    load = ModelLoad(base_model=judge, dtype=dtype)
    explicit = {"token": token} if token else {}
    tok = AutoTokenizer.from_pretrained(judge, **{**hub_kwargs(load), **explicit})
    return load_model(load, "causal", device, **explicit).eval(), tok


def _endpoint_verdict(client: Any, url: str, label: str, model: str, text: str,
                      headers: dict[str, str], key: Optional[str]) -> Optional[str]:
    """Ask the endpoint once (retrying 429/5xx); any failure is a RuntimeError without the key in it."""
    import httpx

    body = {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0, "max_tokens": 5}
    for attempt in range(RETRIES + 1):
        try:
            response = client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            if attempt < RETRIES:
                time.sleep(2 ** attempt)
                continue
            raise RuntimeError(redact(f"judge endpoint {label} could not be reached: {type(exc).__name__}: {exc}",
                                      key)) from None
        if (response.status_code == 429 or response.status_code >= 500) and attempt < RETRIES:
            time.sleep(2 ** attempt)
            continue
        if response.status_code != 200:
            raise RuntimeError(redact(f"judge endpoint {label} answered HTTP {response.status_code}: "
                                      f"{response.text[:300]}", key))
        try:
            reply = response.json()["choices"][0]["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise RuntimeError(redact(f"judge endpoint {label} answered HTTP 200 without a chat completion: "
                                      f"{response.text[:300]}", key)) from None
        return parse_verdict(reply if isinstance(reply, str) else None)
    return None  # not reached: the last attempt returns or raises


def _outcome(tuned_first: Optional[str], base_first: Optional[str]) -> str:
    """Fine-tuned is A in the first order and B in the second: both must agree for a win or a loss."""
    if tuned_first == "A" and base_first == "B":
        return "win"
    if tuned_first == "B" and base_first == "A":
        return "loss"
    return "tie"


def _judge_all(items: list[JudgeItem], verdict: Callable[[str], Optional[str]],
               progress: Optional[Callable[[float, str], None]], max_answer_chars: int) -> list[dict]:
    """Each item asked twice, the answers swapped: fine-tuned as A first, then base as A."""
    examples: list[dict] = []
    for number, item in enumerate(items, 1):
        tuned_first = verdict(render_prompt(item.prompt, item.fine_tuned, item.base, max_answer_chars))
        base_first = verdict(render_prompt(item.prompt, item.base, item.fine_tuned, max_answer_chars))
        examples.append({"prompt": item.prompt, "base": item.base, "fine_tuned": item.fine_tuned,
                         "verdict_tuned_first": tuned_first, "verdict_base_first": base_first,
                         "outcome": _outcome(tuned_first, base_first)})
        if progress is not None:
            progress(number / len(items), f"Judged {number} of {len(items)} prompts")
    return examples


def judge_answers(items: list[JudgeItem], judge: str, *, endpoint_model: Optional[str] = None,
                  key_env: str = "OPENAI_API_KEY", token: Optional[str] = None,
                  progress: Optional[Callable[[float, str], None]] = None,
                  max_answer_chars: int = 4000) -> JudgeResult:
    """Judge every item in both orders with `judge` (a model folder / Hub id, or an endpoint URL)."""
    if not items:
        raise ValueError("no prompts to judge")
    key = (os.environ.get(key_env) or None) if is_endpoint(judge) else None
    label = _public_label(judge, key)
    if is_endpoint(judge):
        if not endpoint_model:
            raise ValueError(f"the judge {label} is an endpoint: set evaluation.judge_model to the model name "
                             "it serves (e.g. gpt-4o-mini)")
        import httpx

        url = judge.strip().rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        model_name: str = endpoint_model
        with httpx.Client(timeout=ENDPOINT_TIMEOUT_S) as client:
            examples = _judge_all(items, lambda text: _endpoint_verdict(client, url, label, model_name, text,
                                                                        headers, key), progress, max_answer_chars)
    else:
        from ..model_cache import release_memory

        model, tok = _load_local(judge, token)
        try:
            letters = _letter_ids(tok)
            examples = _judge_all(items, lambda text: _local_verdict(model, tok, text, letters), progress,
                                  max_answer_chars)
        finally:
            del model, tok
            release_memory()  # gc, then the CUDA allocator's cache back to the device

    n = len(examples)
    wins = sum(e["outcome"] == "win" for e in examples)
    losses = sum(e["outcome"] == "loss" for e in examples)
    ties = n - wins - losses
    given = [v for e in examples for v in (e["verdict_tuned_first"], e["verdict_base_first"]) if v is not None]
    interval = wilson(wins + 0.5 * ties, n)
    return JudgeResult(judge=label, template=JUDGE_TEMPLATE, prompts=n, wins=wins, losses=losses, ties=ties,
                       win_rate=(wins + 0.5 * ties) / n, ci=list(interval) if interval else None,
                       position_consistency=(wins + losses) / n,
                       first_position_rate=given.count("A") / len(given) if given else 0.5, examples=examples)
