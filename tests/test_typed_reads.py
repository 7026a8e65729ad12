"""The job spec stays typed after submit: no module reads a spec value out of a dict -- a section
(`job.spec["training"]`, `(job.spec or {}).get("compute")`), a value through one (`...get("hub").get("sync")`), or
any spec field with a default of its own (`row.get("quantization", "none")`), which is how copies of defaults drift
apart. Read `Job.job_spec` / `stored_spec(...)` / the JobSpec instead. The check walks the syntax tree, so a read
split over lines or wrapped in `(x or {})` is caught like any other."""
from __future__ import annotations

import ast
import re
import typing
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel

from trainer_backend.spec import JobSpec, PromptTemplate

PACKAGE = Path(__file__).resolve().parents[1] / "trainer_backend"
NOT_CHECKED = {
    "spec.py": "the spec itself",
    "autotrain.py": "reads AutoTrain's own config format (its keys, its defaults) to translate it into a spec",
}
# Dict reads whose keys happen to be spec names but whose dict is not a stored spec: (file, key) -> why.
NOT_SPEC_DICTS = {
    ("data/formats.py", "type"): "OpenAI content parts ({type, text}) of a message in the user's data",
    ("rewards.py", "text"): "OpenAI content parts ({type, text}) of a conversational completion",
    ("jobs/manager.py", "hub"): "a spec being written: the secret put back into the dict an override edits",
    ("jobs/manager.py", "training"): "a spec being written: a continued job's training section, before parsing",
    ("ui/service.py", "data"): "a spec being written: the uploaded dataset's path, before parsing",
    ("ui/service.py", "model"): "a spec being written: the base model the form named, before parsing",
    ("ui/train_form.py", "data"): "a spec being written: the form's dataset source and columns, before parsing",
    ("ui/train_io.py", "data"): "a spec being saved: its dataset named portably (the upload's own name)",
    ("ui/reward_table.py", "training"): "a spec being written: the form's trainer decides its reward table",
    ("ui/reward_table.py", "trainer"): "(the same)",
    ("jobs/intake.py", "project_name"): "a spec that did not parse: its name, for the refused job's row",
    ("hub/push.py", "model"): "tokenizer.json's model section (BPE, WordPiece...)",
    ("export/pretokenizers.py", "model"): "tokenizer.json's model section (BPE, WordPiece...)",
    ("ui/jobs_tab.py", "grpo"): "the page's per-session view state: whether the job shown is a GRPO job",
    ("ui/chat_tab.py", "text"): "a chat message's content parts ({type, text}) as Gradio's Chatbot hands them back",
    ("ui/job_view.py", "compute"): "the /job_status reply's compute view (jobs/manager.py), not the spec",
    ("jobs/cli.py", "step"): "a progress snapshot's step (jobs/progress.py), not a sweep range's step",
    ("tool_calls.py", "parameters"): "a tool's JSON schema (its parameters), not a sweep's parameters",
    ("ui/sweep_form.py", "sweep"): "a spec being written: the form's sweep section, before parsing",
    ("ui/sweep_view.py", "parameters"): "the /sweep_status reply (sweep.json): each range in words, not the spec",
}
SECTIONS = set(JobSpec.model_fields)


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


def _key(node: ast.AST) -> Optional[str]:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _dict_read(node: ast.AST) -> Optional[tuple[ast.AST, str, bool]]:
    """(the dict, the key, whether a default is restated) for `d.get("key"[, default])` and `d["key"]`."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
            and node.args and _key(node.args[0]) is not None:
        return node.func.value, str(_key(node.args[0])), len(node.args) > 1
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _key(node.slice) is not None:
        return node.value, str(_key(node.slice)), False
    return None


def _without_fallback(node: ast.AST) -> ast.AST:
    """`(x or {})` reads what `x` reads."""
    while isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        node = node.values[0]
    return node


def _reads_a_section(node: ast.AST) -> bool:
    read = _dict_read(_without_fallback(node))
    return read is not None and (read[1] in SECTIONS or _reads_a_section(read[0]))


def spec_dict_reads(package: Path = PACKAGE) -> list[str]:
    fields_ = spec_field_names()
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel in NOT_CHECKED:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            read = _dict_read(node)
            if read is None or (rel, read[1]) in NOT_SPEC_DICTS:
                continue
            receiver, key, restated_default = read
            if key in SECTIONS or (key in fields_ and (restated_default or _reads_a_section(receiver))):
                found.append(f"trainer_backend/{rel}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return sorted(set(found), key=lambda line: (line.split(":")[0], int(line.split(":")[1])))


def test_spec_field_names_cover_sections_and_nested_fields() -> None:
    names = spec_field_names()
    assert {"training", "quantization", "lora", "r", "data", "chat_template", "base_model"} <= names
    assert {"preset", "prompt_if_empty"} <= names, "fields of Optional[...] sections (data.prompt_template)"


def test_no_spec_value_is_read_from_a_dict() -> None:
    found = spec_dict_reads()
    assert not found, "read these from the typed JobSpec (Job.job_spec, stored_spec) instead:\n" + "\n".join(found)


def test_the_guard_catches_every_form_of_a_spec_dict_read(tmp_path: Path) -> None:
    fake = tmp_path / "trainer_backend"
    (fake / "hub").mkdir(parents=True)
    (fake / "hub" / "x.py").write_text(
        'q = spec.get("training", {}).get("quantization", "none")\n'
        'backend = ((job.spec or {}).get("compute")\n'
        '           or {}).get("backend")\n'
        'sync = job.spec["hub"]["sync"]\n'
        'r = row.get("r", 8)\n'
        'user = whoami.get("fullname", "?")  # not a spec field: fine\n'
        'text = part.get("text")  # a spec field name, read from a dict that is no spec: fine\n'
        'good = job.job_spec.compute.backend\n')
    assert spec_dict_reads(fake) == [
        'trainer_backend/hub/x.py:1: q = spec.get("training", {}).get("quantization", "none")',
        'trainer_backend/hub/x.py:2: backend = ((job.spec or {}).get("compute")',
        'trainer_backend/hub/x.py:4: sync = job.spec["hub"]["sync"]',
        'trainer_backend/hub/x.py:5: r = row.get("r", 8)']


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
