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
            "training": {"trainer": name}}
    if trainer_info(name).pairs:
        with pytest.raises(Exception, match=f"trainer '{name}' needs preference data"):
            parse_spec(spec)
    else:
        assert parse_spec(spec)[0].training.trainer == name
    assert (name in PAIR_TRAINERS) == ("messages" not in trainer_info(name).formats)


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
        trainer_info("grpo")
