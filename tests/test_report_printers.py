"""The dataset report's printers handle every trainer's shape (issue 14): the CLI text, the JSON, the app's
report view and the model card, for a token sample (sft/generic) and a preference pair (dpo/orpo/reward)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer_backend.data.report import DatasetReport, PreferenceSample, TokenSample
from trainer_backend.model_card import build_model_card
from trainer_backend.training.adapter_meta import AdapterMeta
from trainer_backend.training.run import prepare_job

PAIRS = "preference/orca_dpo_pairs_validation_flat.jsonl"
CHATS = "chat/oasst_en100_messages.jsonl"


@pytest.mark.parametrize("trainer, relpath, sample_type", [
    ("sft", CHATS, TokenSample), ("dpo", PAIRS, PreferenceSample), ("reward", PAIRS, PreferenceSample)])
def test_every_printer_handles_the_trainers_report(trainer: str, relpath: str, sample_type: type, make_spec,
                                                   real_data: Path) -> None:
    spec = make_spec({"path": str(real_data / relpath), "chat_template": "chatml", "max_rows": 4},
                     lengths={"max_prompt_length": 128}, training={"trainer": trainer})
    report = prepare_job(spec)[1].dataset_report()
    assert isinstance(report.sample, sample_type) and report.trainer == trainer

    text = "\n".join(report.text_lines())
    assert f"format:        {report.format.format}" in text and report.sample.rendered in text
    if trainer == "reward":  # reward rows are prompt+answer token ids: decoded whole, no separate prompt
        assert report.sample.prompt is None and "[[chosen]]" in text and "[[prompt]]" not in text
    elif trainer == "dpo":
        assert "[[prompt]]" in text and "[[rejected]]" in text

    data = json.loads(json.dumps(report.to_dict()))  # what data_report.json / doctor --json / the API hold
    assert data["sample"]["rendered"] == report.sample.rendered
    assert DatasetReport.from_dict(data) == report
    assert f"**Format:** {report.format.format}" in report.markdown()  # the Train tab's view

    data.pop("sample")  # the Hub copy has no rendered row
    card = build_model_card("alice/run", AdapterMeta(trainer=trainer, base_model="org/base"), None, data)
    assert f"{report.format.format} — {report.format.reason}" in card and "train rows | 4 used of 4 read" in card


def test_a_report_written_before_samples_had_kinds_still_prints() -> None:
    old = {"format": {"format": "preference", "reason": "r"}, "splits": {"train": {"rows_read": 2, "rows_valid": 2,
           "rows_used": 2}}, "sample": {"file": "f", "row": 1, "prompt": "p", "chosen": "a", "rejected": "b"}}
    report = DatasetReport.from_dict(old)
    assert isinstance(report.sample, PreferenceSample) and "[[rejected]]\nb" in "\n".join(report.text_lines())
    assert "| train | 2 | 2 | 2 | — |" in report.markdown()  # no token counts: shown as such, not a KeyError
