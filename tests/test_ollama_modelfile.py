"""The Ollama Modelfile's TEMPLATE is read from the job's Jinja chat template and renders conversations exactly as
training did; templates it cannot express get no TEMPLATE and a comment saying why. Tokenizers only, no weights."""
from __future__ import annotations

from dataclasses import replace

import pytest

from trainer_backend.data.chat_render import render_template
from trainer_backend.data.templates import SHIPPED_TEMPLATES
from trainer_backend.data.vendor_templates import trl_vendor_templates
from trainer_backend.export.ollama import (TurnFormatError, derive_turn_format, modelfile,
                                           ollama_template, read_turn_format, render_go_pieces, stop_tokens)

QWEN_DEFAULT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
            "<start_of_turn>", "<end_of_turn>"]


def make_tokenizer(eos: str = "<|endoftext|>", bos: str | None = "<|begin_of_text|>"):
    """A byte-level BPE tokenizer with no merges (rendering and stop tokens read only its special tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token=bos)
    fast.add_special_tokens({"additional_special_tokens": [t for t in SPECIALS if t != eos]})
    return fast


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def template(name: str) -> str:
    return SHIPPED_TEMPLATES[name].source if name in SHIPPED_TEMPLATES else trl_vendor_templates()[name]


def msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


# held out: none of the probes' texts; newlines, quotes, braces and non-ASCII inside messages
CONVERSATION = [msg("system", "You answer like a pirate.\nKeep it short."),
                msg("user", "What is 2+2? Reply as {\"answer\": n}."), msg("assistant", "{\"answer\": 4}, matey!"),
                msg("user", "And \"\"\" in Python?"), msg("assistant", "A docstring — ahoy."),
                msg("user", "Thanks!")]


def ollama_commands(text: str) -> list[tuple[str, str]]:
    """(command, value) as Ollama's parser/parser.go reads a Modelfile: a value runs to a line break where it is
    no longer inside quotes; \"\"\"...\"\"\" and "..." lose their quotes; non-printable characters are dropped."""
    nil, name, value, param, comment = range(5)
    state, buf, command, commands = nil, "", "", []

    def unquote(s: str) -> tuple[str, bool]:
        if s.startswith('"""'):
            return (s[3:-3], True) if len(s) >= 6 and s.endswith('"""') else ("", False)
        if s.startswith('"'):
            return (s[1:-1], True) if len(s) >= 2 and s.endswith('"') else ("", False)
        return s, True

    for ch in text:
        if state == nil:
            nxt, keep = (comment, "") if ch == "#" else (nil, "") if ch in " \t\r\n" else (name, ch)
        elif state == name:
            assert ch.isalpha() or ch in " \t", f"invalid command {buf + ch!r}"
            nxt, keep = (name, ch) if ch.isalpha() else (value, "")
        elif state == param:
            nxt, keep = (param, ch) if ch.isalnum() or ch == "_" else (value, "")
        elif state == value:
            nxt, keep = (nil, ch) if ch in " \t\r\n" else (value, ch)
        else:
            nxt, keep = (nil, "") if ch in "\r\n" else (comment, "")
        if nxt != state:
            if state == name:
                command = {"from": "model"}.get(buf.lower(), buf.lower())
                nxt = param if command == "parameter" else nxt
            elif state == param:
                command = buf
            elif state == value:
                unquoted, ok = unquote(buf.strip())
                if not ok or ch in " \t":
                    buf += ch
                    continue
                commands.append((command, unquoted))
            buf, state = "", nxt
        if keep.isprintable():
            buf += keep
    if state == value:
        unquoted, ok = unquote(buf.strip())
        assert ok, "unterminated quote"
        commands.append((command, unquoted))
    return commands


@pytest.mark.parametrize("name", ["qwen2_5", "llama3_1", "chatml", "llama3", "gemma3", "phi3"])
def test_turn_pieces_reproduce_the_jinja_rendering_of_a_held_out_conversation(tokenizer, name):
    fmt = read_turn_format(tokenizer, template(name))
    jinja = render_template(tokenizer, template(name), CONVERSATION, add_generation_prompt=True)[0]
    assert render_go_pieces(fmt, CONVERSATION) == jinja  # the prompt Ollama builds for the next answer
    training = render_template(tokenizer, template(name), CONVERSATION[:-1])[0]  # ends with an answer, closed
    assert render_go_pieces(fmt, CONVERSATION[:-1], add_generation_prompt=False) == training
    # Ollama continues a last assistant message (prefill) instead of closing it
    assert render_go_pieces(fmt, [msg("user", "Tell a story."), msg("assistant", "Once upon")]).endswith(
        fmt.assistant_prefix + "Once upon")
    without_system = CONVERSATION[1:4]
    assert render_go_pieces(fmt, without_system) == \
        render_template(tokenizer, template(name), without_system, add_generation_prompt=True)[0]


def test_chatml_template_is_ollamas_messages_form(tokenizer):
    assert ollama_template(read_turn_format(tokenizer, template("chatml"))) == (
        '{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}\n'
        '{{- range $i, $_ := .Messages }}\n'
        '{{- $last := eq (len (slice $.Messages $i)) 1 }}\n'
        '{{- if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n'
        '{{ else if eq .Role "assistant" }}<|im_start|>assistant\n{{ .Content }}\n'
        '{{- if not $last }}<|im_end|>\n{{ end }}\n'
        '{{- end }}\n'
        '{{- if and $last (ne .Role "assistant") }}<|im_start|>assistant\n{{ end }}\n'
        '{{- end }}')


def test_qwen_default_system_prompt_and_llama_pieces(tokenizer):
    qwen = read_turn_format(tokenizer, template("qwen2_5"))
    assert qwen.default_system == QWEN_DEFAULT and qwen.bos == ""
    assert "{{ if .System }}\n{{- .System }}\n{{- else }}" + QWEN_DEFAULT + "{{ end }}<|im_end|>" in \
        ollama_template(qwen)
    llama = read_turn_format(tokenizer, template("llama3_1"))
    assert llama.bos == "<|begin_of_text|>" and llama.assistant_suffix == "<|eot_id|>" and llama.trims_content
    text = ollama_template(llama)
    assert "<|begin_of_text|>" not in text  # llama.cpp adds BOS when it tokenizes; twice would shift the prompt
    assert text.startswith("<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023")
    assert '{{- if and $last (ne .Role "assistant") }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ end }}' \
        in text


def test_stop_tokens_are_the_end_of_turn_tokens_and_a_distinct_eos(tokenizer):
    qwen, llama = (read_turn_format(tokenizer, template(n)) for n in ("qwen2_5", "llama3_1"))
    assert stop_tokens(qwen, tokenizer, None) == ["<|im_end|>", "<|endoftext|>"]
    assert stop_tokens(llama, tokenizer, "<|eot_id|>") == ["<|eot_id|>", "<|endoftext|>"]
    same_eos = make_tokenizer(eos="<|im_end|>", bos=None)
    assert stop_tokens(read_turn_format(same_eos, template("qwen2_5")), same_eos, "<|im_end|>") == ["<|im_end|>"]
    phi = read_turn_format(tokenizer, template("phi3"))  # <|end|> is no special token of this tokenizer
    assert phi.closing == "<|endoftext|>" and stop_tokens(phi, tokenizer, None) == ["<|end|>", "<|endoftext|>"]
    assert stop_tokens(None, tokenizer, "<|eot_id|>") == ["<|eot_id|>", "<|endoftext|>"]
    plain = replace(phi, assistant_suffix="\n### End\n")  # no special token: its text
    assert stop_tokens(plain, tokenizer, None) == ["### End", "<|endoftext|>"]
    two_lines = replace(phi, assistant_suffix="\nEnd.\n\nUser:")  # no one-line PARAMETER
    assert stop_tokens(two_lines, tokenizer, None) == ["<|endoftext|>"]


def test_modelfile_system_prompt_job_wins_over_template_default(tokenizer):
    qwen = read_turn_format(tokenizer, template("qwen2_5"))
    stops = stop_tokens(qwen, tokenizer, None)
    default = dict(ollama_commands(modelfile("./model.gguf", qwen, stops, None)))
    assert default["system"] == QWEN_DEFAULT and default["model"] == "./model.gguf"
    assert default["template"] == ollama_template(qwen)
    own = ollama_commands(modelfile("./model.gguf", qwen, stops, "Be brief.", adapter_path="./adapter.gguf",
                                    parameters={"temperature": 0.2, "num_ctx": 4096}))
    assert ("system", "Be brief.") in own and ("adapter", "./adapter.gguf") in own
    assert [v for c, v in own if c == "stop"] == stops
    assert ("temperature", "0.2") in own and ("num_ctx", "4096") in own
    chatml = read_turn_format(tokenizer, template("chatml"))
    assert "system" not in dict(ollama_commands(modelfile("./m.gguf", chatml, [], None)))


def test_modelfile_quotes_triple_quotes_in_system_prompt_and_template(tokenizer):
    chatml = read_turn_format(tokenizer, template("chatml"))
    inline = 'Write docstrings with """ quotes """ like "this".\nEnd with a quote: "'
    assert ("system", inline) in ollama_commands(modelfile("./m.gguf", chatml, [], inline))
    # a line ending in """ would close SYSTEM early (no escapes exist there): the TEMPLATE carries it instead
    closing_line = 'Docstrings look like """\nthis"""'
    text = modelfile("./m.gguf", chatml, [], closing_line)
    commands = dict(ollama_commands(text))
    assert "system" not in commands and "# The system prompt cannot be quoted in SYSTEM" in text
    assert 'Docstrings look like ""{{ "\\"" }}\nthis""{{ "\\"" }}' in commands["template"]
    assert render_go_pieces(replace(chatml, default_system=closing_line),
                            [msg("user", "hi")]).startswith(f"<|im_start|>system\n{closing_line}<|im_end|>")
    with pytest.raises(ValueError, match="cannot be written"):
        modelfile("./m.gguf", None, [], closing_line)
    # piece text with "{{" and """ is written as Go string literals, and survives the Modelfile parser
    odd = replace(chatml, user_prefix='{{user}} """\n')
    template_text = dict(ollama_commands(modelfile("./m.gguf", odd, [], None)))["template"]
    assert '{{ "{{" }}user}} ""{{ "\\"" }}\n{{ .Content }}' in template_text


def test_inexpressible_templates_give_a_reason_and_no_template(tokenizer):
    with pytest.raises(TurnFormatError, match="<think>"):  # Qwen3 renders the last answer with a think block
        read_turn_format(tokenizer, template("qwen3"))
    assert derive_turn_format(tokenizer, template("qwen3")) is None
    last_answer_otherwise = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
        "{% if m['role'] == 'assistant' and loop.last %}<|im_end|><|endoftext|>{% else %}<|im_end|>{% endif %}\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(TurnFormatError) as weird:
        read_turn_format(tokenizer, last_answer_otherwise)
    with pytest.raises(TurnFormatError, match="System role not supported"):
        read_turn_format(tokenizer, template("gemma"))
    text = modelfile("./model.gguf", None, ["<|im_end|>"], "Be brief.", no_template_reason=str(weird.value))
    commands = ollama_commands(text)
    assert "template" not in dict(commands) and ("system", "Be brief.") in commands
    assert ("stop", "<|im_end|>") in commands
    comment = next(line for line in text.splitlines() if line.startswith("# No TEMPLATE"))
    assert "an assistant turn ends otherwise" in comment and "falls back to the chat template stored in the GGUF" in comment


def test_every_trl_vendor_template_gives_a_verified_format_or_a_reason(tokenizer):
    expressible, reasons = [], {}
    for name, source in trl_vendor_templates().items():
        try:
            fmt = read_turn_format(tokenizer, source)
        except TurnFormatError as exc:
            reasons[name] = str(exc)
            continue
        expressible.append(name)
        assert render_go_pieces(fmt, CONVERSATION) == \
            render_template(tokenizer, source, CONVERSATION, add_generation_prompt=True)[0], name
    print(f"\n{len(expressible)}/{len(expressible) + len(reasons)} TRL vendor templates expressible: "
          f"{', '.join(expressible)}")
    for name, reason in reasons.items():
        print(f"  {name}: {reason[:160]}")
    assert {"qwen2_5", "qwen2_5_vl", "qwen3_instruct_2507", "llama3", "llama3_1", "llama3_2", "gemma3",
            "phi3"} <= set(expressible)
    assert {"qwen3", "gptoss", "deepseek_r1_distill", "lfm2_2_5"} <= set(reasons)
    assert "reasoning" in reasons["lfm2_2_5"]  # it drops <think> blocks from earlier answers
