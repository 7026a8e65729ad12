"""Rendering and loss masks: exactly which tokens carry loss, EOS once, templates that stop."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer_backend.data import prepare_data
from trainer_backend.data.encode import IGNORE, EncodeSettings, encode_examples
from trainer_backend.data.templates import SHIPPED_TEMPLATES, has_generation_markers, resolve_chat_template

CONVO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
         {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4"}]


def _encode(tokenizer, example: dict, kind: str, template: str | None, completion_only: bool = True):
    s = EncodeSettings(kind=kind, chat_template=template, completion_only_loss=completion_only, block_size=512)
    enc = encode_examples([example], tokenizer, s)
    return enc.input_ids[0], enc.labels[0]


def _trained_text(tok, ids, labels) -> str:
    return tok.decode([t for t, l in zip(ids, labels) if l != IGNORE])


def _masked_text(tok, ids, labels) -> str:
    return tok.decode([t for t, l in zip(ids, labels) if l == IGNORE])


def test_chatml_trains_assistant_turns_and_end_of_turn_only(tiny_tokenizer) -> None:
    template = SHIPPED_TEMPLATES["chatml"].source
    ids, labels = _encode(tiny_tokenizer, {"messages": CONVO}, "messages", template)
    trained = _trained_text(tiny_tokenizer, ids, labels)
    assert trained == "Hello!<|im_end|>4<|im_end|>"  # the template's end-of-turn, no EOS after it
    masked = _masked_text(tiny_tokenizer, ids, labels)
    assert "Be brief." in masked and "Hi there" in masked and "2+2?" in masked
    assert "<|im_start|>assistant\n" in masked  # the header is prompt, not target


@pytest.mark.parametrize("name, trained", [
    ("chatml", "Hello!<|im_end|>4<|im_end|>"),
    ("zephyr", "Hello!<|endoftext|>4<|endoftext|>"),      # the template itself ends turns with EOS
    ("llama3", "Hello!<|eot_id|>4<|eot_id|>"),
    ("alpaca", "Hello!<|endoftext|>4<|endoftext|>"),
])
def test_trained_tokens_after_each_answer_are_exactly_the_templates_end_of_turn(tiny_tokenizer, name: str, trained: str) -> None:
    ids, labels = _encode(tiny_tokenizer, {"messages": CONVO}, "messages", SHIPPED_TEMPLATES[name].source)
    assert _trained_text(tiny_tokenizer, ids, labels) == trained
    eos = tiny_tokenizer.eos_token_id
    assert not any(a == b == eos for a, b in zip(ids, ids[1:])), f"{name}: EOS doubled"


def test_tokenizer_template_without_markers_masks_like_shipped_one(tiny_tokenizer) -> None:
    """The tiny tokenizer's own template is plain ChatML without {% generation %}: prefix rendering finds
    the same assistant spans as our marked ChatML."""
    assert not has_generation_markers(tiny_tokenizer.chat_template)
    own = _encode(tiny_tokenizer, {"messages": CONVO}, "messages", tiny_tokenizer.chat_template)
    shipped = _encode(tiny_tokenizer, {"messages": CONVO}, "messages", SHIPPED_TEMPLATES["chatml"].source)
    assert own == shipped


def test_shipped_templates_are_training_compatible_for_trl(tiny_tokenizer) -> None:
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    for name, tpl in SHIPPED_TEMPLATES.items():
        assert has_generation_markers(tpl.source), name
        if tpl.end_of_turn and tpl.end_of_turn not in tiny_tokenizer.get_vocab():
            continue  # TRL's probe needs the marker to be one token; the pipeline warns about that case
        assert is_chat_template_stop_token_trained(tiny_tokenizer, chat_template=tpl.source), name


def test_completion_only_loss_off_trains_everything(tiny_tokenizer) -> None:
    ids, labels = _encode(tiny_tokenizer, {"messages": CONVO}, "messages", SHIPPED_TEMPLATES["chatml"].source,
                          completion_only=False)
    assert labels == ids


def test_alpaca_preset_uses_no_input_variant_and_masks_prompt(make_spec, tiny_tokenizer, real_data: Path) -> None:
    spec = make_spec({"path": str(real_data / "alpaca/self_instruct_seed_tasks.jsonl"), "max_rows": 6,
                      "prompt_template": {"preset": "alpaca"}}, lengths={"block_size": 4096, "model_max_length": 8192})
    prepared = prepare_data(spec, tiny_tokenizer)
    rows = [json.loads(l) for l in (real_data / "alpaca/self_instruct_seed_tasks.jsonl").read_text().splitlines()[:6]]
    enc = prepared.train.encoded
    for ids, labels, src in zip(enc.input_ids, enc.labels, enc.source_index):
        row = rows[src]
        prompt = _masked_text(tiny_tokenizer, ids, labels)
        assert ("### Input:" in prompt) == bool(row["input"].strip())
        assert _trained_text(tiny_tokenizer, ids, labels) == row["output"] + "<|endoftext|>"


def test_custom_prompt_template_turns_classification_csv_into_instructions(make_spec, tiny_tokenizer,
                                                                          tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("text,label\nI loved this film,positive\nWorst meal ever,negative\n")
    spec = make_spec({"path": str(csv), "prompt_template": {
        "prompt": "Classify the sentiment: {text}\nSentiment:", "response": " {label}"}})
    enc = prepare_data(spec, tiny_tokenizer).train.encoded
    assert _masked_text(tiny_tokenizer, enc.input_ids[0], enc.labels[0]) == "Classify the sentiment: I loved this film\nSentiment:"
    assert _trained_text(tiny_tokenizer, enc.input_ids[0], enc.labels[0]) == " positive<|endoftext|>"


def test_qa_with_template_none_uses_plain_prompt_completion(make_spec, tiny_tokenizer, real_data: Path) -> None:
    spec = make_spec({"path": str(real_data / "qa/gsm8k_train.jsonl"), "max_rows": 3, "chat_template": "none"},
                     lengths={"block_size": 512})
    prepared = prepare_data(spec, tiny_tokenizer)
    assert prepared.detection.format == "qa"
    ids, labels = prepared.train.encoded.input_ids[0], prepared.train.encoded.labels[0]
    assert _masked_text(tiny_tokenizer, ids, labels).startswith("Natalia sold clips")
    assert _trained_text(tiny_tokenizer, ids, labels).endswith("#### 72<|endoftext|>")


def test_max_prompt_length_cuts_old_prompt_tokens_keeps_answer(tiny_tokenizer) -> None:
    long_prompt = {"prompt": "word " * 200, "completion": "the answer", "system": None}
    s = EncodeSettings(kind="pair", chat_template=SHIPPED_TEMPLATES["chatml"].source, completion_only_loss=True,
                       block_size=512, max_prompt_length=20)
    enc = encode_examples([long_prompt], tiny_tokenizer, s)
    ids, labels = enc.input_ids[0], enc.labels[0]
    first = next(i for i, l in enumerate(labels) if l != IGNORE)
    assert first == 20 and enc.truncated == 0 or first == 20
    assert _trained_text(tiny_tokenizer, ids, labels) == "the answer<|im_end|>"


def test_generic_trains_on_every_token(make_spec, tiny_tokenizer, real_data: Path) -> None:
    spec = make_spec({"path": str(real_data / "text/tinyshakespeare.txt"), "max_rows": 5},
                     training={"trainer": "generic"})
    enc = prepare_data(spec, tiny_tokenizer).train.encoded
    assert all(l == i for ids, labels in zip(enc.input_ids, enc.labels) for i, l in zip(ids, labels))


def test_warns_when_end_of_turn_marker_is_not_one_token(make_spec, tiny_tokenizer, real_data: Path) -> None:
    spec = make_spec({"path": str(real_data / "chat/oasst_en100_messages.jsonl"), "max_rows": 3,
                      "chat_template": "llama3"})
    report = prepare_data(spec, tiny_tokenizer).report()
    assert any("<|eot_id|>" in w and "not a single token" in w for w in report["warnings"])


def test_tokenizer_without_template_needs_explicit_choice(make_spec, tiny_model_dir: Path, real_data) -> None:
    from transformers import AutoTokenizer

    from trainer_backend.data import DataError

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    spec = make_spec({"path": str(real_data / "chat/oasst_en100_messages.jsonl"), "max_rows": 3})
    with pytest.raises(DataError, match="no chat template"):
        prepare_data(spec, tok)
    assert resolve_chat_template(tok, "zephyr") == SHIPPED_TEMPLATES["zephyr"].source


def test_pad_token_is_not_eos(tiny_model_dir: Path) -> None:
    from trainer_backend.spec import ModelSpec
    from trainer_backend.training.model_loading import load_tokenizer

    tok = load_tokenizer(ModelSpec(base_model=str(tiny_model_dir)))
    assert tok.pad_token != tok.eos_token and tok.padding_side == "right"
