"""The job spec stays typed after submit: no module reads a spec value out of a dict with a default of its own
(`spec.get("training", {}).get("quantization", "none")`), which is how copies of defaults drift apart."""
from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from trainer_backend.spec import JobSpec, PromptTemplate

PACKAGE = Path(__file__).resolve().parents[1] / "trainer_backend"
# Reads of dicts that are not the spec, whose keys happen to be spec field names: (file, key) -> why.
NOT_SPEC_DICTS = {
    ("jobs/progress.py", "max_steps"): "events.jsonl lines carry the trainer's computed total; the default keeps "
                                       "the last total seen",
    ("data/formats.py", "type"): "OpenAI content parts ({type, text}) of a message in the user's data",
    ("rewards.py", "text"): "OpenAI content parts ({type, text}) of a conversational completion",
}


def spec_field_names(model: type[BaseModel] = JobSpec) -> set[str]:
    """Every field and section name of the spec, through Optional[...] and containers too."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        pending: list[Any] = [field.annotation]
        while pending:
            annotation = pending.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                names |= spec_field_names(annotation)
            pending.extend(typing.get_args(annotation))
    return names


def defaulted_spec_reads(package: Path = PACKAGE) -> list[str]:
    names = "|".join(sorted(map(re.escape, spec_field_names()), key=len, reverse=True))
    pattern = re.compile(rf"""\.get\(\s*["']({names})["']\s*,""")
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel == "spec.py":  # the spec itself
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            names_read = {m.group(1) for m in pattern.finditer(line.split("#", 1)[0])}
            if {(rel, name) for name in names_read} - set(NOT_SPEC_DICTS):
                found.append(f"trainer_backend/{rel}:{number}: {line.strip()}")
    return found


def test_spec_field_names_cover_sections_and_nested_fields() -> None:
    names = spec_field_names()
    assert {"training", "quantization", "lora", "r", "data", "chat_template", "base_model"} <= names
    assert {"preset", "prompt_if_empty"} <= names, "fields of Optional[...] sections (data.prompt_template)"


def test_no_spec_value_is_read_from_a_dict_with_a_restated_default() -> None:
    found = defaulted_spec_reads()
    assert not found, "read these from the typed JobSpec / AdapterMeta instead:\n" + "\n".join(found)


def test_the_grep_catches_a_restated_default(tmp_path: Path) -> None:
    fake = tmp_path / "trainer_backend"
    (fake / "hub").mkdir(parents=True)
    (fake / "hub" / "x.py").write_text('q = spec.get("training", {}).get("quantization", "none")\n'
                                       'user = whoami.get("fullname", "?")  # not a spec field: fine\n')
    assert defaulted_spec_reads(fake) == [
        'trainer_backend/hub/x.py:1: q = spec.get("training", {}).get("quantization", "none")']


def test_chat_and_the_model_card_prompt_in_the_words_that_trained() -> None:
    """An adapter trained on a prompt template (a preset, or a preset with parts of its own) is prompted in chat,
    and shown in its model card, with the template text training rendered: the preset's text, not a copy."""
    from trainer_backend.data.templates import render_prompt_template
    from trainer_backend.inference import _fill_prompt_template
    from trainer_backend.model_card import build_model_card
    from trainer_backend.training.adapter_meta import AdapterMeta

    roles = {"prompt": "instruction", "input": "input", "response": "output"}
    for template in (PromptTemplate(preset="alpaca"), PromptTemplate(preset="qa"),
                     PromptTemplate(preset="alpaca", prompt="Do: {prompt} with {input}\n"),
                     PromptTemplate(prompt="Q: {instruction}\nA:", response=" {output}")):
        meta = AdapterMeta.model_validate_json(
            AdapterMeta(base_model="org/base", prompt_template=template).model_dump_json())  # as read back
        trained, _ = render_prompt_template(template, {"instruction": "hello", "input": "", "output": "x"}, roles)
        single_turn = meta.single_turn_prompt()
        assert single_turn is not None and _fill_prompt_template(single_turn, "hello") == trained
        card = build_model_card("alice/x", meta, None, None)
        shown = re.sub(r"<\w+>", "hello", re.search(r"prompt = '(.*)'  # the prompt template", card)
                       .group(1).encode().decode("unicode_escape"))
        assert shown == trained, template
