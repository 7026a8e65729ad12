"""Every vendor chat template the installed TRL ships trains exactly the assistant's answers and their end-of-turn
marker, or is refused with a clear message: never a crash, never prompt text.

The cases come from the installed package (trl/chat_templates/*.jinja), so a TRL upgrade that adds a template adds
cases; a template not in EXPECTED below still gets the generic checks (answers trained in order, no prompt text,
the end-of-turn marker trained), and its exact spans should then be added here.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import pytest

from trainer_backend.data import DataError, prepare_data
from trainer_backend.data.encode import IGNORE, EncodeSettings, encode_examples
from trainer_backend.data.issues import RowError
from trainer_backend.data.templates import choose_chat_template, end_of_turn
from trainer_backend.data.vendor_templates import trl_training_variant, trl_vendor_templates

VENDOR = trl_vendor_templates()
SYSTEM, Q1, A1, Q2, A2, THINK = "Be brief.", "Hi there", "Hello!", "2+2?", "4", "Think A."
WITH_SYSTEM = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": Q1},
               {"role": "assistant", "content": A1}, {"role": "user", "content": Q2},
               {"role": "assistant", "content": A2}]
NO_SYSTEM = WITH_SYSTEM[1:]
# The reasoning field under every name templates read it by (reasoning_content, thinking, reasoning).
WITH_REASONING = [dict(m, reasoning_content=THINK, thinking=THINK, reasoning=THINK) if m["role"] == "assistant"
                  else m for m in NO_SYSTEM]

# What the model generates for one assistant turn ({a}: answer, {r}: reasoning), after the generation prompt:
# "turn" for every turn, "last" for the final one where it ends differently, "think" with reasoning. "drops" = the
# template leaves reasoning out of earlier turns, so only the last turn trains (earlier ones are context).
_IM = "{a}<|im_end|>"
_QWEN_THINK = "{r}\n</think>\n\n{a}<|im_end|>"
_NEMO_THINK = "{r}\n</think>\n{a}<|im_end|>"
EXPECTED: dict[str, dict[str, Any]] = {
    "cohere": {"turn": "{a}<|END_OF_TURN_TOKEN|>"},
    "cohere2": {"turn": "{a}<|END_RESPONSE|><|END_OF_TURN_TOKEN|>"},
    "deepseek_r1_distill": {"turn": "{a}<｜end▁of▁sentence｜>"},
    "deepseekv3": {"turn": "{a}<｜end▁of▁sentence｜>"},
    "diffusion_gemma": {"turn": "{a}<turn|>", "think": "<|channel>thought\n{r}\n<channel|>{a}<turn|>", "drops": True},
    "gemma": {"turn": "{a}<end_of_turn>", "no_system_role": True},
    "gemma3": {"turn": "{a}<end_of_turn>"},
    **{f"gemma4{v}": {"turn": "{a}<turn|>"} for v in ("", "_v2", "_v3", "_v4")},
    "gemma4_v5": {"turn": "{a}<turn|>", "think": "<|channel>thought\n{r}\n<channel|>{a}<turn|>", "drops": True},
    "glm4moe": {"turn": "\n<think></think>\n{a}<|user|>", "think": "\n<think>{r}</think>\n{a}<|user|>",
                "drops": True},
    "gptoss": {"turn": "<|channel|>final<|message|>{a}<|end|>", "last": "<|channel|>final<|message|>{a}<|return|>",
               "think": "<|channel|>analysis<|message|>{r}<|end|><|start|>assistant<|channel|>final<|message|>{a}"
                        "<|return|>", "drops": True},
    "idefics3": {"turn": " {a}<end_of_utterance>"},
    "smolvlm": {"turn": " {a}<end_of_utterance>"},
    "lfm2": {"turn": _IM},
    "lfm2_v2": {"turn": _IM},
    **{name: {"turn": _IM, "think": "<think>{r}</think>{a}<|im_end|>", "drops": True}
       for name in ("lfm2_2_5", "lfm2_2_5_v2", "lfm2_2_5_vl")},
    **{name: {"turn": "{a}<|eot_id|>"} for name in ("llama3", "llama3_1", "llama3_2")},
    "llava_next": {"turn": " {a}</s>"},
    "muse_glimmer": {"turn": " to=user<|message|>{a}<|eot|>",
                     "think": " to=self<|message|>{r}<|eom|><|start|>assistant to=user<|message|>{a}<|eot|>"},
    "nemotron_3_nano": {"turn": "</think>{a}<|im_end|>", "think": _NEMO_THINK, "drops": True},
    "nemotron_3_super": {"turn": "</think>{a}<|im_end|>", "think": _NEMO_THINK, "drops": True},
    "nemotron_3_ultra": {"turn": "</think>{a}<|im_end|>", "think": "{r}</think>{a}<|im_end|>", "drops": True},
    "nemotron_3_5_lightning": {"turn": "</think>{a}<|im_end|>", "think": "{r}</think>{a}<|im_end|>", "drops": True},
    "phi3": {"turn": "{a}<|end|>"},
    "phi3_5": {"turn": "{a}<|end|>"},
    **{name: {"turn": _IM} for name in ("qwen2_5", "qwen2_5_vl", "qwen3_instruct_2507", "qwen3_vl")},
    "qwen3": {"turn": "<think>\n\n</think>\n\n{a}<|im_end|>", "think": "<think>\n{r}\n</think>\n\n{a}<|im_end|>"},
    "qwen3_5_nothink": {"turn": _IM, "think": _QWEN_THINK},
    **{name: {"turn": "\n</think>\n\n{a}<|im_end|>", "think": _QWEN_THINK}
       for name in ("qwen3_5_think", "qwen3_6", "qwen3_8")},
}

# Marker-looking literals in a template: <|im_end|>, <｜Assistant｜>, <end_of_turn>, <turn|>, [INST], ...
_MARKER = re.compile(r"<\|[^|<>\s]{1,40}\|>|<｜[^｜]{1,40}｜>|<\|?[a-z_]{2,30}\|?>|<[a-z_]+\|>|<\|[a-z_]+>"
                     r"|\[/?[A-Z_]{3,20}\]|</s>")


def vendor_tokenizer(tiny_model_dir: Path, name: str) -> Any:
    """The tiny tokenizer carrying the vendor template, with the template's markers added as special tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.add_tokens(sorted(set(_MARKER.findall(VENDOR[name]))), special_tokens=True)
    tok.chat_template = VENDOR[name]
    return tok


def trained_and_masked(tok: Any, template: str, messages: list[dict]) -> tuple[str, str]:
    s = EncodeSettings(kind="messages", chat_template=template, completion_only_loss=True, block_size=4096)
    enc = encode_examples([{"messages": messages}], tok, s)
    ids, labels = enc.input_ids[0], enc.labels[0]
    return (tok.decode([t for t, l in zip(ids, labels) if l != IGNORE]),
            tok.decode([t for t, l in zip(ids, labels) if l == IGNORE]))


def expected_trained(name: str, messages: list[dict], eos: str) -> str:
    spec = EXPECTED[name]
    answers = [m for m in messages if m["role"] == "assistant"]
    reasoning = "reasoning_content" in answers[0] and "think" in spec
    out = []
    for k, msg in enumerate(answers):
        last = k == len(answers) - 1
        if reasoning and spec.get("drops") and not last:
            continue  # rendered without its reasoning as history: context, not trained
        pattern = spec["think"] if reasoning else spec.get("last", spec["turn"]) if last else spec["turn"]
        out.append(pattern.format(a=msg["content"], r=THINK))
    text = "".join(out)
    # the template's own end-of-turn ends each answer; EOS follows only an answer the template leaves bare
    return text + eos if text.rstrip().endswith(answers[-1]["content"].strip()) else text


def test_every_vendor_template_has_expected_spans() -> None:
    """A TRL upgrade that adds a template fails here until its exact spans are written down above (the generic
    checks in test_vendor_template_trains_answers_only run for it meanwhile)."""
    assert len(VENDOR) >= 40, "the installed TRL ships the vendor templates"
    assert sorted(set(VENDOR) - set(EXPECTED)) == []


@pytest.mark.parametrize("name", sorted(VENDOR))
@pytest.mark.parametrize("case", ["system", "no_system", "reasoning"])
def test_vendor_template_trains_answers_only(tiny_model_dir: Path, name: str, case: str) -> None:
    tok = vendor_tokenizer(tiny_model_dir, name)
    choice = choose_chat_template(tok, "tokenizer")
    messages = {"system": WITH_SYSTEM, "no_system": NO_SYSTEM, "reasoning": WITH_REASONING}[case]
    if case == "system" and EXPECTED.get(name, {}).get("no_system_role"):
        with pytest.raises(RowError, match="chat template rejected the conversation: System role not supported"):
            trained_and_masked(tok, choice.source, messages)
        return
    trained, masked = trained_and_masked(tok, choice.source, messages)
    for prompt_text in (SYSTEM, Q1, Q2):
        assert prompt_text not in trained, f"{name}: prompt text {prompt_text!r} is trained"
    if case == "system":
        assert SYSTEM in masked, f"{name}: the system prompt is not in the training text"
    if name in EXPECTED:
        assert trained == expected_trained(name, messages, tok.eos_token)
    else:  # a template newer than this test: the generic checks
        assert trained.index(A2, trained.index(A1) + len(A1)) > 0
        assert end_of_turn(tok, choice) in trained


@pytest.mark.parametrize("name", sorted(VENDOR))
def test_training_variant_is_trls_own(tiny_model_dir: Path, name: str) -> None:
    """Our choice of template agrees with TRL's get_training_chat_template; the report says which was used."""
    from trl.chat_template_utils import get_training_chat_template

    tok = vendor_tokenizer(tiny_model_dir, name)
    choice = choose_chat_template(tok, "tokenizer")
    tok.chat_template = VENDOR[name]
    try:
        trl_choice: Optional[str] = get_training_chat_template(tok) or VENDOR[name]
    except ValueError:  # TRL has no training variant for it (Llama 3.1/3.2, Gemma 4): ours is the original
        trl_choice = VENDOR[name]
    assert choice.source == trl_choice
    assert choice.origin == ("trl_training" if trl_training_variant(name) else "tokenizer")
    assert tok.chat_template == VENDOR[name]  # choose_chat_template installed it; reset above for TRL's check


@pytest.mark.parametrize("name", ["qwen3", "phi3_5", "deepseekv3", "nemotron_3_nano", "gemma", "gemma4_v5"])
def test_doctor_on_vendor_templates_with_real_chats(tiny_model_dir: Path, make_spec, real_data: Path,
                                                    name: str) -> None:
    """The crash from the issue (Qwen3, Phi-3.5, DeepSeek-V3, Nemotron-3-Nano): the dataset report now builds,
    says which template text trained, and trains answers only."""
    tok = vendor_tokenizer(tiny_model_dir, name)
    spec = make_spec({"path": str(real_data / "chat/oasst_en100_messages.jsonl"), "max_rows": 4,
                      "system_prompt": "Answer kindly."}, lengths={"block_size": 4096, "model_max_length": 8192})
    if name == "gemma":  # Gemma (v1/2) has no system role: refused row by row, with the fix
        with pytest.raises(DataError, match="System role not supported") as info:
            prepare_data(spec, tok)
        assert "drop the system prompt" in str(info.value.issues[0])
        return
    report = prepare_data(spec, tok).dataset_report()
    source = report.chat_template_source or ""
    assert (f"TRL training variant {name}_training.jinja" in source) == (name != "gemma4_v5")
    assert source in "\n".join(report.text_lines()) and source in report.markdown()
    assert report.splits["train"].rows_used == 4
    assert "Answer kindly." in report.sample.rendered.split("]]")[0]  # the system prompt is in a no-loss span


def test_reasoning_field_in_data_trains_with_its_answer(tiny_model_dir: Path, make_spec, tmp_path: Path) -> None:
    import json

    rows = [{"messages": WITH_REASONING}] * 2
    path = tmp_path / "reasoning.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    tok = vendor_tokenizer(tiny_model_dir, "qwen3")
    enc = prepare_data(make_spec({"path": str(path)}), tok).train.encoded
    trained = tok.decode([t for t, l in zip(enc.input_ids[0], enc.labels[0]) if l != IGNORE])
    assert trained == expected_trained("qwen3", WITH_REASONING, tok.eos_token)


@pytest.mark.parametrize("name", sorted(VENDOR))
def test_vendor_template_preference_pairs_split_at_the_generation_prompt(tiny_model_dir: Path, name: str) -> None:
    """DPO/ORPO get prompt text up to where the model starts generating, and each answer as the model generates it
    (with its end-of-turn marker), for every vendor template."""
    from trainer_backend.data.chat_render import render_template
    from trainer_backend.data.preference import render_preference

    tok = vendor_tokenizer(tiny_model_dir, name)
    template = choose_chat_template(tok, "tokenizer").source
    prompt = NO_SYSTEM[:1] if EXPECTED.get(name, {}).get("no_system_role") else [WITH_SYSTEM[0], NO_SYSTEM[0]]
    example = {"prompt": prompt, "chosen": [{"role": "assistant", "content": A2}],
               "rejected": [{"role": "assistant", "content": "5"}]}
    head, chosen, rejected = render_preference(example, tok, template)
    for answer, text in ((A2, chosen), ("5", rejected)):
        full, _ = render_template(tok, template, prompt + [{"role": "assistant", "content": answer}])
        assert (head + text).removesuffix(tok.eos_token).rstrip() == full.removesuffix(tok.eos_token).rstrip()
        assert text.endswith(tok.eos_token) and not any(p["content"] in text for p in prompt)
        if name in EXPECTED:
            turn = EXPECTED[name].get("last", EXPECTED[name]["turn"]).format(a=answer)
            assert text.startswith(turn) and not text[len(turn):].removesuffix(tok.eos_token).strip()


# Templates of different shapes (reasoning channels, history rewriting, no generation markers, date headers):
# `train` end to end on each; the masks `train` consumes are checked above for every template.
TRAINED_END_TO_END = ["gptoss", "gemma4_v5", "nemotron_3_nano", "phi3_5"]  # + qwen3 in test_serve_as_trained


@pytest.mark.slow  # trains (2 steps on the tiny model per template)
@pytest.mark.parametrize("name", [n for n in TRAINED_END_TO_END if n in VENDOR])
def test_train_runs_on_vendor_template(tiny_model_dir: Path, make_spec, real_data: Path, tmp_path: Path,
                                       name: str) -> None:
    import math
    import shutil

    from transformers import AutoModelForCausalLM

    from trainer_backend.training.adapter_meta import read_adapter_meta
    from trainer_backend.run_events import Log, read_events
    from trainer_backend.training.run import run_training

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    tok = vendor_tokenizer(tiny_model_dir, name)
    tok.save_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.resize_token_embeddings(len(tok))  # the template's markers are new special tokens
    model.save_pretrained(model_dir)
    spec = make_spec({"path": str(real_data / "chat/oasst_en100_messages.jsonl"), "max_rows": 4,
                      "system_prompt": "Answer kindly."}, lengths={"block_size": 512},
                     model={"base_model": str(model_dir)},
                     training={"max_steps": 2, "batch_size": 2, "save_strategy": "no", "eval_strategy": "no",
                               "logging_steps": 1})
    result = run_training(spec)
    meta = read_adapter_meta(result.adapter_dir)
    assert meta is not None and meta.end_of_turn and meta.chat_template_source, meta  # recorded for serving
    assert f"{name}" in meta.chat_template_source or "tokenizer" in meta.chat_template_source
    assert (Path(result.adapter_dir) / "adapter_model.safetensors").exists()
    losses = [e.loss for e in read_events(spec.output_dir) if isinstance(e, Log)]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
