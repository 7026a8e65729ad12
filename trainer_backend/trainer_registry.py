"""What each trainer needs and how it is described, written once (plain data, no imports of ours).

The spec's validation, the data pipeline, the model card, merging and the AutoTrain translation read these
entries instead of listing trainer names; each module in training/trainers/ builds its TRL trainer for the entry
of the same name (tests/test_trainer_registry.py keeps the two in step).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Formats of sequences to train on (sft, generic), and the two that only the trainers for them read: prompt-only rows
# (grpo generates its own completions) and unpaired thumbs-up/down feedback (kto).
SEQUENCE_FORMATS: tuple[str, ...] = ("text", "alpaca", "qa", "messages", "sharegpt", "prompt_completion", "xlam",
                                     "preference", "tokenized")
DATA_FORMATS: tuple[str, ...] = SEQUENCE_FORMATS + ("prompt", "feedback")
RowKind = Literal["sequences", "pairs", "feedback", "prompts"]


@dataclass(frozen=True)
class TrainerInfo:
    name: str
    title: str                         # what the model card and the UI call it
    formats: tuple[str, ...]           # data formats it trains on; the data check refuses the rest
    # What a training row is: a token sequence with a loss mask, a preference pair (prompt, chosen, rejected), an
    # unpaired completion with a thumbs-up/down label, or a prompt whose completions the trainer generates.
    rows: RowKind = "sequences"
    head: Literal["causal", "seq_cls"] = "causal"  # seq_cls: a one-logit score head (reward models)
    # Scores against a frozen reference model: with LoRA it is the base with the adapter off (no extra memory);
    # fully fine-tuning, TRL loads a second copy of the weights (the plan counts it).
    reference_model: bool = False
    uses_beta: bool = False            # training.beta applies
    uses_dpo_loss_type: bool = False   # training.dpo_loss_type applies
    documents: bool = False            # rows are documents: packed by default, no chat prompt in the card
    card_summary: str = ""             # one sentence for the model card

    @property
    def pairs(self) -> bool:
        return self.rows == "pairs"

    @property
    def sequences_per_row(self) -> int:
        """Sequences one row puts through the model in a step: a pair's chosen and rejected go in one batch."""
        return 2 if self.pairs else 1

    @property
    def pipeline_tag(self) -> str:
        return "text-classification" if self.head == "seq_cls" else "text-generation"


TRAINERS: dict[str, TrainerInfo] = {t.name: t for t in (
    TrainerInfo("sft", "supervised fine-tuning", SEQUENCE_FORMATS,
                card_summary="Trained on the assistant's answers only (prompt tokens carry no loss)."),
    TrainerInfo("generic", "causal language modelling", SEQUENCE_FORMATS, documents=True,
                card_summary="Trained on every token of the documents (continued pretraining)."),
    TrainerInfo("reward", "reward modelling", ("preference",), rows="pairs", head="seq_cls",
                card_summary="Scores a conversation: higher means preferred (trained on chosen/rejected pairs)."),
    TrainerInfo("dpo", "direct preference optimisation", ("preference",), rows="pairs", uses_beta=True,
                uses_dpo_loss_type=True, reference_model=True,
                card_summary="Trained to prefer the chosen answer over the rejected one (DPO)."),
    TrainerInfo("orpo", "odds-ratio preference optimisation", ("preference",), rows="pairs", uses_beta=True,
                card_summary="Trained on chosen answers with an odds-ratio penalty on rejected ones (ORPO, no "
                             "reference model)."),
    TrainerInfo("kto", "Kahneman-Tversky optimisation", ("feedback",), rows="feedback", uses_beta=True,
                reference_model=True,
                card_summary="Trained on unpaired thumbs-up / thumbs-down feedback: towards the liked answers, away "
                             "from the disliked ones (KTO)."),
    TrainerInfo("grpo", "group relative policy optimisation", ("prompt", "alpaca", "qa", "messages", "sharegpt",
                                                                 "prompt_completion", "xlam"),
                rows="prompts", reference_model=True,
                card_summary="Trained with reinforcement learning on its own completions, scored by reward functions "
                             "that check them (GRPO)."),
)}
PAIR_TRAINERS: tuple[str, ...] = tuple(name for name, t in TRAINERS.items() if t.pairs)


def trainer_info(name: str) -> TrainerInfo:
    """The entry for `name`; KeyError names the trainers there are."""
    try:
        return TRAINERS[name]
    except KeyError:
        raise KeyError(f"unknown trainer '{name}' (trainers: {', '.join(TRAINERS)})") from None
