"""The round-trip check: does an exported GGUF behave like the adapter it came from?

Each file is loaded with llama.cpp (llama-cpp-python; a LoRA GGUF on top of the base's f16 GGUF) and compared with
the reference (reference.py: base + adapter in PEFT) on the same held-out prompts:
- prompt tokens: the conversation rendered with the GGUF's own chat template and tokenized by llama.cpp the way a
  llama.cpp runner does (a leading BOS the template writes is not doubled) must give exactly the ids training saw;
  when they differ the check says whether the template or the tokenizer is to blame;
- stop tokens: every token that ends an answer in training must end generation in llama.cpp;
- top-1 agreement: teacher-forced over the reference's greedy answer, the share of positions where llama.cpp's most
  likely next token is the reference's (or one the reference rates within TIE_NATS of it); mean KL(reference ||
  GGUF) per token from the same logits;
- same stop: the share of prompts whose llama.cpp greedy answer stops at the same end-of-turn token as the
  reference's (or, like it, runs the full N tokens).
Thresholds are per format (THRESHOLDS) and stated in the README; a failing file is marked, never silently shipped.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from .llama_cpp import llama_threads
from .reference import PromptReference, Reference
from .thresholds import THRESHOLDS, Thresholds

Verdict = Literal["pass", "warn", "fail"]
# Two next tokens the reference itself rates within this many nats (about 1 % in probability) are a tie: llama.cpp
# picking the other one is rounding, not a different model (KL shows the size of any real difference).
TIE_NATS = 0.01


@dataclass
class FileCheck:
    file: str
    format: str                         # f16, q8_0, q4_K_M, lora_gguf, ...
    prompts: int = 0
    tokens_identical: int = 0           # prompts whose runner-built ids equal training's
    template_identical: Optional[int] = None  # prompts the GGUF's own template renders like training (None: none)
    positions: int = 0
    top1_agreement: float = 0.0
    mean_kl: Optional[float] = None
    same_stop: int = 0
    missing_stops: list[str] = field(default_factory=list)  # training stop tokens llama.cpp does not stop at
    verdict: Verdict = "fail"
    problems: list[str] = field(default_factory=list)  # what differs, in words: template, stop token, tokenizer, numerics

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GgufRunner:
    """One GGUF (optionally with a LoRA GGUF on top) loaded in llama.cpp with every position's logits kept."""

    def __init__(self, model_path: Path, lora_path: Optional[Path] = None, n_ctx: int = 2048):
        import llama_cpp

        self.llm = llama_cpp.Llama(model_path=str(model_path), lora_path=str(lora_path) if lora_path else None,
                                   n_ctx=n_ctx, logits_all=True, verbose=False, seed=0,
                                   n_threads=llama_threads(), n_threads_batch=llama_threads())
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._is_eog = llama_cpp.llama_vocab_is_eog

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.llm.metadata)

    def is_eog(self, token: int) -> bool:
        return bool(self._is_eog(self._vocab, token))

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def logits_after(self, ids: list[int]) -> Any:
        """Next-token logits at every position of `ids` (float32 [len(ids), n_vocab])."""
        self.llm.reset()
        self.llm.eval(ids)
        return self.llm.scores[: len(ids)].copy()

    def greedy(self, ids: list[int], max_tokens: int) -> tuple[list[int], Optional[int]]:
        """llama.cpp's greedy answer and the end-of-generation token it stopped at (None: ran max_tokens)."""
        self.llm.reset()
        self.llm.eval(ids)
        out: list[int] = []
        for _ in range(max_tokens):
            token = int(self.llm.scores[self.llm.n_tokens - 1].argmax())
            out.append(token)
            if self.is_eog(token):
                return out, token
            self.llm.eval([token])
        return out, None

    def close(self) -> None:
        self.llm.close()


def runner_prompt_ids(runner: GgufRunner, template_text: Optional[str], prompt: PromptReference,
                      tokenizer: Any) -> tuple[list[int], Optional[str]]:
    """The ids a llama.cpp runner would feed for this prompt, and the text its template rendered (None: the
    file carries no template, or the job trained without a chat template — then training's text is used)."""
    add_bos = runner.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
    if template_text is None or prompt.add_special:
        return runner.tokenize(prompt.text, add_bos=prompt.add_special and add_bos), None
    text = tokenizer.apply_chat_template(prompt.messages, chat_template=template_text, add_generation_prompt=True,
                                         tokenize=False)
    bos = tokenizer.bos_token
    shown = text
    if add_bos and bos and text.startswith(bos):  # llama.cpp's chat path strips it and lets the tokenizer add it
        text = text[len(bos):]
    return runner.tokenize(text, add_bos=add_bos), shown


def _kl(reference_logprobs: Any, logits: Any) -> float:
    import numpy as np

    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    log_q = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    log_p = reference_logprobs.astype(np.float64)
    return float((np.exp(log_p) * (log_p - log_q)).sum(axis=-1).mean())


def check_file(runner: GgufRunner, reference: Reference, tokenizer: Any, name: str, fmt: str) -> FileCheck:
    import numpy as np

    result = FileCheck(file=name, format=fmt, prompts=len(reference.prompts))
    template = runner.metadata.get("tokenizer.chat_template")
    chat_job = any(not p.add_special for p in reference.prompts)
    if chat_job and template is not None:
        result.template_identical = 0
    result.missing_stops = [tokenizer.convert_ids_to_tokens(t) for t in sorted(reference.stop_ids)
                            if t < reference.vocab_size and not runner.is_eog(t)]
    agree, kls, positions = 0, [], 0
    for prompt in reference.prompts:
        ids, rendered = runner_prompt_ids(runner, template, prompt, tokenizer)
        result.tokens_identical += ids == prompt.ids
        if rendered is not None and result.template_identical is not None:
            result.template_identical += rendered == prompt.text
        logits = runner.logits_after(prompt.ids + prompt.answer[:-1])[len(prompt.ids) - 1:] if prompt.answer else None
        if logits is not None:
            n = min(len(prompt.answer), logits.shape[0])
            width = min(logits.shape[1], prompt.logprobs.shape[1])
            reference_logprobs = prompt.logprobs[:n, :width]
            picked = reference_logprobs[np.arange(n), logits[:n, :width].argmax(-1)]
            agree += int((reference_logprobs.max(-1) - picked <= TIE_NATS).sum())
            kls.append(_kl(prompt.logprobs[:n, :width], logits[:n, :width]) * n)
            positions += n
        _, stop = runner.greedy(prompt.ids, reference.max_tokens)
        result.same_stop += stop == prompt.stop
    result.positions = positions
    result.top1_agreement = agree / positions if positions else 0.0
    result.mean_kl = sum(kls) / positions if positions else None
    result.verdict, result.problems = judge(result, fmt, chat_job and template is None)
    return result


def judge(result: FileCheck, fmt: str, template_missing: bool) -> tuple[Verdict, list[str]]:
    """pass / warn / fail against THRESHOLDS[fmt] (a LoRA GGUF is held to f16's), with what differs in words."""
    limits = THRESHOLDS.get(fmt, THRESHOLDS["f16"])
    fails: list[str] = []
    warns: list[str] = []
    n = result.prompts
    if template_missing:
        fails.append("template: the file carries no chat template, so runners guess one")
    elif result.template_identical is not None and result.template_identical < n:
        fails.append(f"template: the file's chat template renders {n - result.template_identical} of {n} prompts "
                     "differently from the training template")
    if result.tokens_identical < n and (result.template_identical in (None, n)):
        fails.append(f"tokenizer: llama.cpp tokenizes {n - result.tokens_identical} of {n} prompts differently "
                     "(token ids differ from training's)")
    if result.missing_stops:
        fails.append(f"stop token: llama.cpp does not stop at {', '.join(result.missing_stops)}, which ends every "
                     "answer in training — the model would talk on")
    stop_share = result.same_stop / n if n else 0.0
    if stop_share < limits.same_stop_pass:
        (fails if stop_share < limits.same_stop_pass - 0.25 else warns).append(
            f"stop token: {n - result.same_stop} of {n} answers stop elsewhere than the adapter's")
    top1, kl = result.top1_agreement, result.mean_kl
    if top1 < limits.top1_warn or (kl is not None and kl > limits.kl_warn):
        fails.append(_numerics(top1, kl, limits))
    elif top1 < limits.top1_pass or (kl is not None and kl > limits.kl_pass):
        warns.append(_numerics(top1, kl, limits))
    if fails:
        return "fail", fails + warns
    return ("warn" if warns else "pass"), warns


def _numerics(top1: float, kl: Optional[float], limits: Thresholds) -> str:
    kl_text = f", mean KL {kl:.4f} (pass ≤ {limits.kl_pass})" if kl is not None else ""
    return f"numerics: top-1 agreement {top1:.1%} (pass ≥ {limits.top1_pass:.0%}){kl_text}"
