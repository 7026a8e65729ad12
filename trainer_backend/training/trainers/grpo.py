"""Group Relative Policy Optimisation: TRL's GRPOTrainer, scored by the spec's reward functions (rewards.py).

The prompts are the exact texts the model generates from (data/rl_rows.py), so generation stops where a chat
turn ends: the template's end-of-turn token is added to the stop tokens. With LoRA the reference model is the
base with the adapter disabled. Every `grpo.sample_every` steps a few completions with each reward's score go to
events.jsonl (`samples`), so the Jobs tab shows what the model is learning to write.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from ...rewards import build_reward_functions
from ...run_events import Sample, Samples
from ..common import TrainContext, common_args


class SampleRecorder:
    """Wraps the reward functions: the completions of one generation batch and the scores each reward gave them
    are written as one `samples` event every `every` steps (rank 0 only)."""

    def __init__(self, events: Any, names: list[str], weights: list[float], every: int, keep: int):
        self.events, self.names, self.weights, self.every, self.keep = events, names, weights, every, keep
        self.batch: Optional[dict] = None
        self.recorded: set[int] = set()

    def wrap(self, fn: Any) -> Callable[..., list]:
        def scored(prompts: list, completions: list, **kwargs: Any) -> list:
            scores = fn(prompts=prompts, completions=completions, **kwargs)
            self._note(kwargs.get("trainer_state"), prompts, completions, fn.name, scores)
            return scores
        scored.__name__ = fn.name  # TRL logs rewards/<name>/mean after it
        return scored

    def _note(self, state: Any, prompts: list, completions: list, name: str, scores: list) -> None:
        if self.events is None or state is None or not state.is_world_process_zero:
            return
        step = state.global_step + 1  # the optimizer step these completions train
        if name == self.names[0]:
            due = (step == 1 or step % self.every == 0) and step not in self.recorded
            self.batch = {"step": step, "prompts": prompts[: self.keep], "completions": completions[: self.keep],
                          "scores": {}} if due else None
        if self.batch is None:
            return
        self.batch["scores"][name] = [None if s is None else float(s) for s in scores[: self.keep]]
        if name == self.names[-1]:
            self._write(self.batch)
            self.recorded.add(self.batch["step"])
            self.batch = None

    def _write(self, batch: dict) -> None:
        samples = []
        for i, (prompt, completion) in enumerate(zip(batch["prompts"], batch["completions"])):
            rewards = {n: batch["scores"][n][i] for n in self.names}
            total = sum(w * (r or 0.0) for w, r in zip(self.weights, rewards.values()))
            samples.append(Sample(prompt=_text(prompt)[-600:], completion=_text(completion)[:2000],
                                  rewards=rewards, total=round(total, 4)))
        self.events.write(Samples(step=batch["step"], samples=samples))


def _text(value: Any) -> str:
    if isinstance(value, list):  # conversational: [{"role": ..., "content": ...}]
        return "".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    return str(value)


def stop_token_ids(tokenizer: Any, end_of_turn: Optional[str]) -> list[int]:
    """EOS and the chat template's end-of-turn token (when it is one token): where generation must stop."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if end_of_turn:
        eot = tokenizer(end_of_turn, add_special_tokens=False, verbose=False)["input_ids"]
        if len(eot) == 1 and eot[0] not in ids:
            ids.append(eot[0])
    return ids


def build(ctx: TrainContext) -> Any:
    from trl import GRPOConfig, GRPOTrainer

    g = ctx.spec.grpo
    functions = build_reward_functions(g.rewards)
    weights = [r.weight for r in g.rewards]
    recorder = SampleRecorder(ctx.events, [f.name for f in functions], weights, g.sample_every, g.samples_kept)
    # TRL reads the stop tokens from the model's generation config when it is built
    ctx.model.generation_config.eos_token_id = stop_token_ids(ctx.tokenizer, ctx.end_of_turn)
    common = common_args(ctx)
    # An eval batch holds whole groups; TRL counts the prompt tokens it generates from itself (the Trainer's own
    # count looks for input_ids that GRPO batches do not have, and warns every step)
    groups = max(1, ctx.spec.training.batch_size // g.num_generations)
    common.update(per_device_eval_batch_size=groups * g.num_generations, include_num_input_tokens_seen="no")
    args = GRPOConfig(**common, beta=g.beta, num_generations=g.num_generations,
                      max_completion_length=g.max_completion_length, temperature=g.temperature, top_p=g.top_p,
                      loss_type=g.loss_type, scale_rewards=g.scale_rewards, num_iterations=g.num_iterations,
                      epsilon=g.epsilon, mask_truncated_completions=g.mask_truncated_completions,
                      reward_weights=weights, log_completions=False)
    return GRPOTrainer(model=ctx.model, reward_funcs=[recorder.wrap(f) for f in functions], args=args,
                       train_dataset=ctx.train_dataset, eval_dataset=ctx.eval_dataset, processing_class=ctx.tokenizer,
                       peft_config=ctx.peft_config, callbacks=ctx.callbacks)
