"""GGUF export, checked: tiny Llama- and Qwen-family adapters (real TRL templates) exported with llama.cpp's own
tools to merged safetensors, GGUF f16 / q8_0 / q4_K_M, a LoRA GGUF and a Modelfile, and each file compared with
the adapter it came from; deliberately broken files fail the check with the right reason."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from export_models import build_family_model  # noqa: E402
from hubhelpers import ALICE, FAST, hub, loopback_hub  # noqa: E402,F401  (fixtures)

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="GGUF export needs llama-cpp-python (requirements.txt)")

ALL_FORMATS = ["merged", "f16", "q8_0", "q4_K_M", "lora_gguf", "modelfile"]


def _train(root: Path, family: str, real_data: Path, **sections: Any) -> Path:
    """Train a tiny adapter; with `export` / `hub` sections the job exports and pushes as a spec asks it to."""
    from trainer_backend.hub.publish import train_and_push
    from trainer_backend.spec import parse_spec

    rows = [json.loads(line) for line in (real_data / "chat" / "msft_gsm8k_chat_train_messages.jsonl").open()][:48]
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n" for r in rows))
    corpus = [m["content"] for r in rows for m in r["messages"]] * 2
    model = build_family_model(root / "model", family, corpus)
    spec, _ = parse_spec({
        "project_name": f"tiny-{family}", "output_dir": str(root / "job"), "model": {"base_model": str(model)},
        "data": {"path": str(data), "chat_template": "tokenizer", "valid_split": "auto", "valid_fraction": 0.1},
        "lengths": {"block_size": 256}, "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "training": {"max_steps": 12, "learning_rate": 5e-3, "batch_size": 4, "gradient_accumulation": 1,
                     "logging_steps": 6, "save_strategy": "no", "eval_strategy": "no", "warmup_ratio": 0.0,
                     "scheduler": "constant", "packing": False, "gradient_checkpointing": False}, **sections})
    train_and_push(spec)
    return root / "job"


def _export(job: Path, formats: list[str]) -> Any:
    from trainer_backend.export.run import export_job
    from trainer_backend.spec_export import ExportSpec

    return export_job(job, ExportSpec(formats=formats, check_prompts=4, check_tokens=16))


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, real_data: Path) -> dict:
    job = _train(tmp_path_factory.mktemp(f"export-{request.param}"), request.param, real_data)
    record = _export(job, ALL_FORMATS)
    return {"family": request.param, "job": job, "record": record}


def _file(record: Any, fmt: str) -> Any:
    return next(f for f in record.files if f.format == fmt)


def test_every_format_is_made_and_f16_behaves_like_the_adapter(exported: dict) -> None:
    record, out = exported["record"], exported["job"] / "export"
    assert record.state == "succeeded", record.error
    stem = f"tiny-{exported['family']}"
    for name in (f"{stem}-f16.gguf", f"{stem}-q8_0.gguf", f"{stem}-q4_K_M.gguf", f"{stem}-lora-f16.gguf",
                 "base-f16.gguf", "merged/model.safetensors", "Modelfile", "export.json"):
        assert (out / name).is_file(), name
    sizes = {f.format: f.bytes for f in record.files}
    assert sizes["q4_K_M"] < sizes["q8_0"] < sizes["f16"], sizes  # the quantizer really quantized
    f16 = _file(record, "f16").check
    assert f16["verdict"] == "pass", f16["problems"]
    assert f16["tokens_identical"] == f16["prompts"] == f16["template_identical"] == 4
    assert f16["top1_agreement"] >= 0.99 and f16["same_stop"] == 4 and not f16["missing_stops"]
    lora = _file(record, "lora_gguf").check
    assert lora["verdict"] == "pass", lora["problems"]
    for fmt in ("q8_0", "q4_K_M"):
        check = _file(record, fmt).check
        assert check["verdict"] in ("pass", "warn", "fail") and check["tokens_identical"] == 4
    saved = json.loads((out / "export.json").read_text())
    assert [f["name"] for f in saved["files"]] == [f.name for f in record.files]


def test_the_modelfile_speaks_the_training_template(exported: dict) -> None:
    text = (exported["job"] / "export" / "Modelfile").read_text()
    stem, family = f"tiny-{exported['family']}", exported["family"]
    assert f"FROM ./{stem}-q4_K_M.gguf" in text or f"FROM ./{stem}-q8_0.gguf" in text
    stop = "<|eot_id|>" if family == "llama" else "<|im_end|>"
    assert f'PARAMETER stop "{stop}"' in text
    assert "TEMPLATE" in text and ".Messages" in text
    check = exported["record"].modelfile
    assert check and check["identical"] == check["prompts"] > 0, check


def _broken_copy(exported: dict, tmp_path: Path, *metadata_args: str) -> Path:
    from trainer_backend.export.gguf import set_metadata

    src = exported["job"] / "export" / f"tiny-{exported['family']}-f16.gguf"
    dest = tmp_path / src.name
    shutil.copyfile(src, dest)
    set_metadata(dest, tmp_path / "log.txt", list(metadata_args))
    return dest


def _check(exported: dict, path: Path, fmt: str = "f16") -> Any:
    from transformers import AutoTokenizer

    from trainer_backend.export.reference import PROBE_CONVERSATIONS, build_reference
    from trainer_backend.export.roundtrip import GgufRunner, check_file
    from trainer_backend.hub.merge import load_for_merge

    loaded = load_for_merge(exported["job"] / "adapter")
    tokenizer = AutoTokenizer.from_pretrained(exported["job"] / "export" / "merged")
    reference = build_reference(loaded.model, tokenizer, loaded.meta, PROBE_CONVERSATIONS, 8)
    runner = GgufRunner(path)
    try:
        return check_file(runner, reference, tokenizer, path.name, fmt)
    finally:
        runner.close()


def test_a_wrong_template_in_the_file_fails_the_check_as_a_template_problem(exported: dict, tmp_path: Path) -> None:
    chatml = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    other = chatml if exported["family"] == "llama" else chatml.replace("<|im_start|>", "<|im_start|> ")
    check = _check(exported, _broken_copy(exported, tmp_path, "--chat-template", other))
    assert check.verdict == "fail"
    assert check.problems[0].startswith("template:"), check.problems
    assert check.template_identical == 0


def test_a_wrong_pre_tokenizer_fails_the_check_as_a_tokenizer_problem(exported: dict, tmp_path: Path) -> None:
    if exported["family"] != "llama":
        pytest.skip("one family is enough for the tokenizer case")
    check = _check(exported, _broken_copy(exported, tmp_path, "--pre-tokenizer", "gpt-2"))
    assert check.verdict == "fail"
    assert any(p.startswith("tokenizer:") for p in check.problems), check.problems


def test_a_stop_token_llama_cpp_does_not_know_is_written_into_the_file_and_its_absence_fails(
        hub: Any, tmp_path_factory: pytest.TempPathFactory, real_data: Path, tmp_path: Path) -> None:
    """A spec's export: runs after training and its push takes the files along (here into the adapter's repo)."""
    from trainer_backend.export.gguf import convert_model

    job = _train(tmp_path_factory.mktemp("export-custom"), "custom", real_data,
                 export={"formats": ["merged", "f16"], "check_prompts": 3, "check_tokens": 8, "gguf_repo": "same"},
                 hub={"push_to_hub": True, "repo_id": "alice/custom-chat", "token": ALICE})
    from trainer_backend.export.state import read_record

    record = read_record(job)
    assert record is not None and record.state == "succeeded", record
    f16 = _file(record, "f16").check
    assert f16["verdict"] == "pass" and not f16["missing_stops"], f16["problems"]
    assert any("end-of-turn token to <|end_of_turn|>" in note for note in record.notes), record.notes
    files = hub.files("alice/custom-chat")
    assert "tiny-custom-f16.gguf" in files and "adapter_model.safetensors" in files
    assert "merged/model.safetensors" not in files, "the merged weights go only to a -merged repo"
    card = files["README.md"].decode()
    assert "## GGUF files" in card and "tiny-custom-f16.gguf" in card and "✅ pass" in card
    raw = convert_model(job / "export" / "merged", tmp_path / "raw-f16.gguf", "f16", tmp_path / "log.txt")
    check = _check({"family": "custom", "job": job, "record": record}, raw)  # the converter's file as it comes
    assert check.verdict == "fail" and check.missing_stops == ["<|end_of_turn|>"]
    assert any(p.startswith("stop token: llama.cpp does not stop at <|end_of_turn|>") for p in check.problems)


def test_push_sends_checked_files_to_a_gguf_repo_and_leaves_failed_ones_out(exported: dict, hub: Any,
                                                                            tmp_path: Path) -> None:
    from trainer_backend.export.state import read_record, write_record
    from trainer_backend.hub.publish import push_and_record
    from trainer_backend.run_events import Pushed, read_events

    if exported["family"] != "qwen2":
        pytest.skip("one family is enough for the push")
    job = tmp_path / "job"
    shutil.copytree(exported["job"], job)
    record = read_record(job)
    q8 = _file(record, "q8_0")
    q8.check = {**q8.check, "verdict": "fail", "problems": ["numerics: top-1 agreement 50.0% (pass ≥ 97%)"]}
    write_record(job / "export", record)
    outcome = push_and_record(job, repo_id="alice/tiny-qwen", token=ALICE, private=True, endpoint=hub.url,
                              retry=FAST, gguf=True)
    result = outcome.result
    assert result is not None and result.gguf is not None and result.gguf.repo_id == "alice/tiny-qwen-GGUF"
    pushed = [e for e in read_events(job) if isinstance(e, Pushed)][-1]
    assert pushed.gguf_url == result.gguf.url and pushed.url == result.url  # what the Jobs tab shows
    files = hub.files("alice/tiny-qwen-GGUF")
    assert {"tiny-qwen2-f16.gguf", "tiny-qwen2-q4_K_M.gguf", "tiny-qwen2-lora-f16.gguf", "Modelfile"} <= set(files)
    assert "tiny-qwen2-q8_0.gguf" not in files and "base-f16.gguf" not in files
    assert files["tiny-qwen2-f16.gguf"] == (job / "export" / "tiny-qwen2-f16.gguf").read_bytes()
    card = files["README.md"].decode()
    assert card.startswith("---\n") and "library_name: gguf" in card and "base_model" not in card.split("---")[1]
    assert "Left out of this repo because their round-trip check failed: tiny-qwen2-q8_0.gguf" in card
    assert "alice/tiny-qwen" in card and hub.repo("alice/tiny-qwen-GGUF").private


def test_a_full_fine_tune_of_a_tokenizer_llama_cpp_has_not_seen_exports_and_passes(
        tiny_model_dir: Path, real_data: Path, tmp_path: Path) -> None:
    """The default tiny model: a GPT-2 byte-level BPE whose vocabulary's hash is in no table (the export names the
    split from tokenizer.json), trained in full (no LoRA: the model itself is converted)."""
    from trainer_backend.spec import parse_spec
    from trainer_backend.training.run import run_training

    spec, _ = parse_spec({
        "project_name": "full", "output_dir": str(tmp_path / "job"), "model": {"base_model": str(tiny_model_dir)},
        "data": {"path": str(real_data / "chat" / "oasst_en100_messages.jsonl"), "chat_template": "chatml",
                 "max_rows": 16},
        "lengths": {"block_size": 128}, "lora": {"enabled": False},
        "training": {"max_steps": 3, "batch_size": 4, "logging_steps": 1, "save_strategy": "no",
                     "eval_strategy": "no", "packing": False}})
    run_training(spec)
    refused = _export(tmp_path / "job", ["f16", "lora_gguf"])
    assert refused.state == "failed" and "trained the full model" in refused.error and not refused.files
    record = _export(tmp_path / "job", ["f16", "modelfile"])
    assert record.state == "succeeded", record.error
    assert _file(record, "f16").check["verdict"] == "pass", _file(record, "f16").check
    log = (tmp_path / "job" / "export" / "export.log").read_text()
    assert "pre-tokenizer hash not in llama.cpp's table; tokenizer.json states the 'gpt-2' split" in log
    assert 'PARAMETER stop "<|im_end|>"' in (tmp_path / "job" / "export" / "Modelfile").read_text()
