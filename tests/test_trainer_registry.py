"""Each trainer is described once (trainer_registry.py) and everything else reads it: the spec's names and
format rules, the trainer modules, the model card's wording, the AutoTrain translation."""
from __future__ import annotations

import importlib
import typing

import pytest

from trainer_backend.spec import TRAINER_FORMATS, TrainerName, parse_spec
from trainer_backend.trainer_registry import PAIR_TRAINERS, TRAINERS, trainer_info


def test_the_spec_the_registry_and_the_trainer_modules_name_the_same_trainers() -> None:
    assert set(typing.get_args(TrainerName)) == set(TRAINERS)
    for name in TRAINERS:
        module = importlib.import_module(f"trainer_backend.training.trainers.{name}")
        assert callable(getattr(module, "build")), f"training/trainers/{name}.py builds the TRL trainer"
    assert TRAINER_FORMATS == {n: t.formats for n, t in TRAINERS.items()}


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_pair_trainers_refuse_other_formats_from_the_registry(name: str) -> None:
    spec = {"model": {"base_model": "org/m"}, "data": {"path": "d.jsonl", "format": "messages"},
            "training": {"trainer": name}, "grpo": {"rewards": [{"type": "length", "max_length": 50}]}
            if name == "grpo" else {}}
    if trainer_info(name).pairs:
        with pytest.raises(Exception, match=f"trainer '{name}' needs preference data"):
            parse_spec(spec)
    else:
        assert parse_spec(spec)[0].training.trainer == name
    assert (name in PAIR_TRAINERS) == (trainer_info(name).formats == ("preference",))


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_model_card_wording_comes_from_the_registry(name: str) -> None:
    from huggingface_hub import ModelCard

    from trainer_backend.model_card import build_model_card
    from trainer_backend.training.adapter_meta import AdapterMeta

    info = trainer_info(name)
    card = ModelCard(build_model_card("alice/x", AdapterMeta(base_model="org/base", trainer=name), None, None))
    assert info.title in card.text and info.card_summary in card.text
    assert card.data.pipeline_tag == info.pipeline_tag


def test_unknown_trainer_names_the_trainers_there_are() -> None:
    with pytest.raises(KeyError, match="trainers: sft, generic"):
        trainer_info("ppo")


def test_trainer_modules_do_not_restate_what_the_registry_says() -> None:
    """The model head (and every other need) is the registry's; a trainer module only builds its TRL trainer."""
    for name in TRAINERS:
        module = importlib.import_module(f"trainer_backend.training.trainers.{name}")
        restated = {"MODEL_TASK", "FORMATS", "HEAD", "PAIRS"} & set(vars(module))
        assert not restated, f"training/trainers/{name}.py restates {restated}: put it in trainer_registry.py"


def _plan_memory(trainer: str, lora: bool) -> dict:
    from types import SimpleNamespace

    from trainer_backend.training.plan import _memory

    spec, _ = parse_spec({"model": {"base_model": "org/m"}, "data": {"path": "d.jsonl"},
                          "training": {"trainer": trainer, "batch_size": 2}, "lora": {"enabled": lora},
                          "lengths": {"block_size": 512, "model_max_length": 512}})
    config = SimpleNamespace(hidden_size=512, intermediate_size=2048, num_hidden_layers=4, vocab_size=32_000)
    memory = _memory(spec, total=10**8, trainable=10**6 if lora else 10**8, quantizable=8 * 10**7, config=config,
                     dtype_bytes=2, on_gpu=True)
    return {k: v.value for k, v in memory.items()}


def test_the_plan_counts_pairs_and_reference_models_from_the_registry() -> None:
    sft, orpo = _plan_memory("sft", lora=True), _plan_memory("orpo", lora=True)
    assert orpo["activations"] == pytest.approx(2 * sft["activations"]), "chosen and rejected go through together"
    assert orpo["logits"] == pytest.approx(2 * sft["logits"])
    assert _plan_memory("dpo", lora=True)["weights"] == sft["weights"], "with LoRA the reference is the base"
    assert _plan_memory("dpo", lora=False)["weights"] == pytest.approx(
        2 * _plan_memory("orpo", lora=False)["weights"], rel=1e-4)
    assert [n for n, t in TRAINERS.items() if t.reference_model] == ["dpo", "kto", "grpo"]


@pytest.mark.parametrize("lora", [True, False])
def test_the_card_says_what_the_reference_model_was(lora: bool) -> None:
    from trainer_backend.model_card import build_model_card
    from trainer_backend.training.adapter_meta import AdapterMeta

    card = build_model_card("alice/x", AdapterMeta(base_model="org/base", trainer="dpo", lora=lora), None, None)
    assert ("the adapter turned off" in card) == lora and ("frozen copy of the base" in card) == (not lora)
    orpo = build_model_card("alice/x", AdapterMeta(base_model="org/base", trainer="orpo", lora=lora), None, None)
    assert "reference model was" not in orpo


def test_each_trainer_gets_rows_of_one_kind_with_the_columns_its_trl_trainer_reads() -> None:
    """data/row_kinds.py: one strategy per kind of training row; the registry's `rows` picks it for each trainer."""
    from trainer_backend.data.row_kinds import ROW_KINDS, row_kind_for

    columns = {name: row_kind_for(info, "preference" if info.pairs else "messages").columns(margin=False)
               for name, info in TRAINERS.items()}
    assert columns == {"sft": ["input_ids", "labels"], "generic": ["input_ids", "labels"],
                       "reward": ["chosen_ids", "rejected_ids"], "dpo": ["prompt", "chosen", "rejected"],
                       "orpo": ["prompt", "chosen", "rejected"], "kto": ["prompt", "completion", "label"],
                       "grpo": ["prompt", "references"]}
    assert [k for k, kind in ROW_KINDS.items() if kind.margin] == ["pairs", "pair_ids"]
    assert ROW_KINDS["pairs"].columns(margin=True)[-1] == "margin"
    # a pair trainer given sequences through a prompt template trains on them as sequences (the format check
    # refuses other formats before rows are encoded)
    assert row_kind_for(TRAINERS["dpo"], "template").name == "sequences"
