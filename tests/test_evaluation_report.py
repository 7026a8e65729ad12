"""The evaluation report (issue 30): after every run, "did it learn, and what did it cost elsewhere?".

The report follows training for sft, dpo and grpo jobs; general tasks run through lm-evaluation-harness itself
(the adapter loaded through its PEFT support); their figures reach evaluation.json, the CLI and the model card; the
forgetting verdict flags an adapter trained to emit one token and not the sample job; the judge asks both orders.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainer_backend.evaluation.forgetting import general_change, verdict
from trainer_backend.evaluation.harness import LOCAL_TASKS, TaskError, TaskPlan, TaskScore, check_plans, plan_tasks
from trainer_backend.evaluation.metrics import EvalReport
from trainer_backend.evaluation.record import EvaluationRecord, read_record, write_record
from trainer_backend.evaluation.stats import paired_diff_ci, wilson
from trainer_backend.spec_evaluation import EvaluationSpec

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
TEXT_TASK = ["lora_studio_text"]  # the stand-in that a tiny model's forgetting shows in (C4 bits per byte)


def _score(task: str, base: float, tuned: float, change: list[float], metric: str = "acc",
           higher: bool = True) -> TaskScore:
    return TaskScore(task=task, metric=metric, higher_is_better=higher, base=base, fine_tuned=tuned, n=50,
                     change=change)


# ---- the verdict, intervals and the record, without a model ---------------------------------------------------


def test_a_drop_is_flagged_only_beyond_noise_and_big_enough() -> None:
    report = EvalReport(rows=20, base={"exact_match": 0.1}, fine_tuned={"exact_match": 0.52},
                        changes={"exact_match": [0.42, 0.2, 0.64]})
    within = verdict(report, [_score("arc_easy", 0.60, 0.587, [-0.013, -0.05, 0.024])])
    assert within.level == "ok" and not within.flagged
    assert within.text == "+42.0 points exact match on your task [+20.0, +64.0]; " \
                          "-1.3 points on general tasks, within noise"
    dropped = verdict(report, [_score("arc_easy", 0.60, 0.40, [-0.20, -0.28, -0.12])])
    assert dropped.flagged and "a drop beyond noise on general tasks: arc_easy acc -20.0 points" in dropped.text
    tiny = verdict(report, [_score("arc_easy", 0.60, 0.597, [-0.003, -0.005, -0.001])])
    assert not tiny.flagged, "a sure but negligible change (0.3 points) is no drop"
    rate = general_change(_score("lora_studio_text", 1.50, 1.80, [0.30, 0.25, 0.35], "bits_per_byte", False))
    assert rate.worse and "20 % worse" in rate.text, "lower-is-better rates: a rise is a drop"
    assert verdict(report, []).level == "no_general"


def test_intervals_need_enough_rows_and_pairing_sees_a_steady_change() -> None:
    assert wilson(3, 4) is None, "below five rows an interval would claim too much"
    low, high = wilson(45, 50) or (0, 0)
    assert 0.78 < low < 0.9 < high < 0.97
    base = [0.2, 0.9, 0.5, 0.7, 0.1, 0.4]
    low, high = paired_diff_ci(base, [b + 0.05 for b in base]) or (0, 0)
    assert low == pytest.approx(0.05) and high == pytest.approx(0.05), "the rows' own spread cancels out"


def test_an_evaluation_json_from_before_the_report_reads_as_its_held_out_part(tmp_path: Path) -> None:
    (tmp_path / "evaluation.json").write_text(json.dumps({"rows": 4, "base": {"eval_loss": 2.0},
                                                          "fine_tuned": {"eval_loss": 1.0}}))
    record = read_record(tmp_path)
    assert record and record.state == "succeeded" and record.held_out_report
    assert record.held_out_report.fine_tuned == {"eval_loss": 1.0}
    record.state, record.pid = "running", 999_999_999  # a process that is gone
    write_record(tmp_path, record)
    gone = read_record(tmp_path)
    assert gone and gone.state == "interrupted" and "Evaluate again" in gone.message
    assert gone.verdict and "loss 2 → 1 on your task" in gone.verdict["text"], "write_record keeps the verdict fresh"


def test_general_tasks_are_planned_before_any_model_loads(tmp_path: Path) -> None:
    plans, notes = plan_tasks(["arc_easy", "lora_studio_text"])  # HF_HUB_OFFLINE=1 in the tests
    assert [(p.name, p.stand_in_for) for p in plans] == [("lora_studio_reasoning", "arc_easy"),
                                                        ("lora_studio_text", None)]
    assert notes == ["arc_easy (reasoning) ran as its local stand-in lora_studio_reasoning: HF_HUB_OFFLINE is set"]
    empty = tmp_path / "no-tasks"
    empty.mkdir()
    with pytest.raises(TaskError, match="no task YAML files"):
        plan_tasks([str(empty)])
    # (asked of the local tasks' registry: the harness's own index of ~15,000 tasks takes 7 CPU-s to build)
    with pytest.raises(TaskError, match="'arc_eazy' is not an lm-evaluation-harness task"):
        check_plans([TaskPlan("arc_eazy", include=str(LOCAL_TASKS))])
    assert EvaluationSpec(general_tasks="arc_easy, sciq").general_tasks == ["arc_easy", "sciq"]  # type: ignore[arg-type]


# ---- on trained tiny models -----------------------------------------------------------------------------------


def _write_local_task(folder: Path) -> Path:
    """A task folder in the harness's own YAML format over a file of ours (as a person would write one)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"question": f"Is {w} a word?", "choices": ["yes", "no"], "label": 0}
            for w in ("apple", "river", "stone", "cloud", "bread", "light")]
    (folder / "words.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "word_check.yaml").write_text(yaml.safe_dump({
        "task": "word_check", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(folder / "words.jsonl")}},
        "output_type": "multiple_choice", "test_split": "test", "doc_to_text": "{{question}}\nAnswer:",
        "doc_to_choice": "{{choices}}", "doc_to_target": "label",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}))
    return folder


def _train(spec: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auto: bool = True) -> Path:
    from trainer_backend.cli import main

    monkeypatch.setenv("LORA_STUDIO_AUTO_EVALUATION", "1" if auto else "0")
    path = tmp_path / f"{spec['project_name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["train", str(path)]) == 0
    return Path(spec["output_dir"])


def _spec(name: str, model: Path, out: Path, data: dict, training: dict, **sections: Any) -> dict:
    return {"project_name": name, "output_dir": str(out), "model": {"base_model": str(model)},
            "data": {"chat_template": "chatml", "valid_split": "auto", "valid_fraction": 0.25, **data},
            "lengths": {"block_size": 256, "max_prompt_length": 160},
            "training": {"batch_size": 2, "gradient_accumulation": 1, "logging_steps": 1, "save_strategy": "no",
                         "eval_strategy": "no", **training},
            "evaluation": {"general_tasks": TEXT_TASK, "task_limit": 4, "max_examples": 6},
            **sections}


@pytest.mark.slow
@pytest.mark.parametrize("trainer, data, held_out_metric", [
    ("sft", {"path": str(REPO / "examples" / "sentiment.jsonl"), "max_rows": 24}, "exact_match"),
    ("dpo", {"path": str(DATA / "preference" / "orca_dpo_pairs_validation_flat.jsonl"), "max_rows": 16},
     "preference_accuracy"),
    ("grpo", {"path": str(DATA / "prompt" / "gsm8k_prompts.jsonl"), "max_rows": 16}, "reward"),
])
def test_the_report_follows_training(trainer: str, data: dict, held_out_metric: str, tiny_model_dir: Path,
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra: dict[str, Any] = {}
    if trainer == "grpo":
        extra["grpo"] = {"max_completion_length": 8, "num_generations": 2,
                         "rewards": [{"type": "numeric_match", "column": "final_answer"}]}
    spec = _spec(f"auto-{trainer}", tiny_model_dir, tmp_path / trainer, data,
                 {"trainer": trainer, "max_steps": 2}, **extra)
    job = _train(spec, tmp_path, monkeypatch)
    record = read_record(job)
    assert record and record.state == "succeeded", record and record.error
    held = record.held_out_report
    assert held and held_out_metric in held.fine_tuned and held_out_metric in held.base
    assert [g.task for g in record.general_scores] == TEXT_TASK and record.general_scores[0].n == 4
    assert record.verdict and record.verdict["text"], "the one line a person reads first"
    assert record.verdict["level"] in ("ok", "drop")
    if trainer == "dpo":  # what a judge (and the export's check) asks: the pairs' prompts
        from trainer_backend.evaluation.heldout import held_out_prompts

        prompts = held_out_prompts(job, 2)
        assert len(prompts) == 2 and prompts[0][-1]["role"] == "user" and prompts[0][-1]["content"]


def _generic(name: str, base: Path, out: Path, data: Path, steps: int, lr: float, lora: bool) -> Any:
    from trainer_backend.spec import parse_spec

    return parse_spec({
        "project_name": name, "output_dir": str(out), "model": {"base_model": str(base)},
        "data": {"path": str(data), "format": "text", "valid_split": "auto", "valid_fraction": 0.2},
        "lengths": {"block_size": 64}, "lora": {"enabled": lora, "r": 16, "alpha": 32, "dropout": 0.0},
        "training": {"trainer": "generic", "max_steps": steps, "learning_rate": lr, "batch_size": 8,
                     "gradient_accumulation": 1, "warmup_ratio": 0.0, "scheduler": "constant",
                     "gradient_checkpointing": False, "logging_steps": 50, "save_strategy": "no",
                     "eval_strategy": "no", **({"packing": False} if lora else {})}})[0]


@pytest.fixture(scope="module")
def sample_and_damaged(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The README's sample job (examples/sft-tiny.yaml: capitals, on the random-init tiny model its README builds),
    and an adapter trained to emit one token on a base that first learned general English: the tiny model trained
    in full on C4 documents (tests/data; none of them is in the C4 stand-in task), so it has something to lose."""
    from trainer_backend.job_files import ADAPTER_DIR
    from trainer_backend.spec import load_spec
    from trainer_backend.training.run import run_training

    root = tmp_path_factory.mktemp("forgetting")
    sample, _ = load_spec(REPO / "examples" / "sft-tiny.yaml", [
        f"model.base_model={tiny_model_dir}", f"output_dir={root / 'sample'}",
        f"data.path={REPO / 'examples' / 'capitals.jsonl'}"])
    english = _generic("english", tiny_model_dir, root / "english", DATA / "text" / "c4_demo.jsonl", 200, 3e-3, False)
    (root / "bang.jsonl").write_text("".join(json.dumps({"text": " ".join(["!"] * 60)}) + "\n" for _ in range(40)))
    damaged = _generic("damaged", root / "english" / ADAPTER_DIR, root / "damaged", root / "bang.jsonl", 120, 5e-2,
                       True)
    for spec in (sample, english, damaged):
        run_training(spec)
    return {"sample": root / "sample", "damaged": root / "damaged"}


@pytest.mark.slow
def test_forgetting_is_flagged_for_a_damaged_adapter_and_not_for_the_sample_job(
        sample_and_damaged: dict[str, Path]) -> None:
    from trainer_backend.evaluation.run import run_report

    settings = EvaluationSpec(general_tasks=TEXT_TASK, task_limit=20, max_examples=8)
    damaged = run_report(sample_and_damaged["damaged"], settings, parts=("general",))
    assert damaged.verdict and damaged.verdict["flagged"], damaged.verdict
    assert "a drop beyond noise on general tasks: lora_studio_text bits per byte +" in damaged.verdict["text"]
    (change,) = damaged.verdict["changes"]
    assert change["low"] > 0.25 * damaged.general[0]["base"], "far beyond the threshold (2 %), not a near miss"
    sample = run_report(sample_and_damaged["sample"], settings)
    assert sample.verdict and not sample.verdict["flagged"], sample.verdict
    assert sample.held_out and sample.verdict["task"].endswith("on your task"), "the task gain comes first"
    assert sample.verdict["text"].startswith(sample.verdict["task"] + "; no drop beyond noise on general tasks")


@pytest.mark.slow
def test_a_local_task_runs_through_the_harness_and_reaches_report_cli_and_card(
        sample_and_damaged: dict[str, Path], tiny_model_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import lm_eval
    from peft import PeftModel

    from trainer_backend.cli import main
    from trainer_backend.hub.push import job_spec
    from trainer_backend.model_card import build_model_card
    from trainer_backend.training.adapter_meta import read_adapter_meta

    job = sample_and_damaged["sample"]
    folder = _write_local_task(tmp_path / "my-tasks")
    calls: list[dict] = []
    real = lm_eval.simple_evaluate

    def spy(model: Any, **kwargs: Any) -> Any:  # what the harness was handed: its own HFLM with the PEFT adapter
        peft = isinstance(model.model, PeftModel)
        lora_layers = [m for m in model.model.modules() if hasattr(m, "lora_A")]
        calls.append({"tasks": kwargs["tasks"], "peft": peft,
                      "adapter_on": bool(lora_layers) and not any(m.disable_adapters for m in lora_layers)})
        return real(model=model, **kwargs)

    monkeypatch.setattr(lm_eval, "simple_evaluate", spy)
    code = main(["evaluate", str(job), "--tasks", str(folder), "--task-limit", "6", "--max-examples", "4",
                 "--judge", str(tiny_model_dir), "--judge-prompts", "2", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert calls == [{"tasks": ["word_check"], "peft": True, "adapter_on": False},
                     {"tasks": ["word_check"], "peft": True, "adapter_on": True}], \
        "base = the adapter switched off, then the adapter on, both through the harness's own PEFT loading"
    printed = json.loads(out[out.index("{"):])
    (score,) = printed["general"]
    assert score["task"] == "word_check" and score["n"] == 6 and score["source"] == "my-tasks"
    judge = printed["judge"]
    assert judge["prompts"] == 2 and all(e["verdict_tuned_first"] in ("A", "B") and
                                         e["verdict_base_first"] in ("A", "B") for e in judge["examples"])
    record = read_record(job)
    assert record and record.general == printed["general"]
    card = build_model_card("me/capitals", read_adapter_meta(job / "adapter"), job_spec(job), None,
                            evaluation=json.loads((job / "evaluation.json").read_text()))
    assert "### General tasks (did it forget?)" in card and "| word_check | acc |" in card
    assert f"**{record.verdict['text']}**" in card if record.verdict else False
    assert "### Judge" in card and "both orders" in card
    assert "Paris" not in card, "answers (user data) stay off the card"


def test_the_record_round_trips(tmp_path: Path) -> None:
    record = EvaluationRecord(state="succeeded", general=[_score("arc_easy", 0.5, 0.6, [0.1, 0.0, 0.2]).to_dict()])
    write_record(tmp_path, record)
    again = read_record(tmp_path)
    assert again and again.general_scores[0].fine_tuned == 0.6 and again.verdict
    assert again.verdict["text"] == "+10.0 points on general tasks, within noise"


def test_the_plan_says_what_the_report_will_cost_before_any_gpu_time() -> None:
    from trainer_backend.spec import parse_spec
    from trainer_backend.training.plan_evaluation import report_seconds

    spec, _ = parse_spec({"model": {"base_model": "Qwen/Qwen2.5-0.5B-Instruct"}, "data": {"path": "d.jsonl"}})
    qwen_half_b = 494e6 * 2  # bf16 weights
    seconds, how = report_seconds(spec, qwen_half_b, "l4x1", True, held_out_rows=200)
    assert seconds is not None and 150 < seconds < 300, (seconds, how)  # ~3.5 minutes on an L4, 50 rows + 3 tasks
    assert how.startswith("held-out ") and "(50 rows)" in how and "3 x 50 examples" in how
    faster, _ = report_seconds(spec, qwen_half_b, "h100", True, held_out_rows=200)
    assert faster is not None and faster < seconds
    tight = spec.model_copy(update={"evaluation": spec.evaluation.model_copy(update={"time_budget": 60})})
    assert report_seconds(tight, qwen_half_b, "l4x1", True, 200)[0] == 60, "never above the report's budget"
    off = spec.model_copy(update={"evaluation": spec.evaluation.model_copy(update={"auto": False})})
    assert report_seconds(off, qwen_half_b, "l4x1", True, 200) == (0.0, "evaluation.auto is off: no report after "
                                                                       "training")
    assert report_seconds(spec, qwen_half_b, "cpu-basic", False, 200)[0] is None


def test_a_metric_measured_on_different_rows_per_side_is_paired_only_where_both_apply() -> None:
    report = EvalReport(rows=8)
    per_row = {"base": {"tool_schema_valid": [1.0] * 5}, "fine_tuned": {"tool_schema_valid": [1.0] * 4 + [0.0]}}
    paired = {"tool_schema_valid": ([1.0] * 5, [1.0] * 6)}  # lengths differ: no change can be paired
    report.add_intervals(per_row, {"tool_schema_valid": ([1.0, 1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0])})
    assert report.changes["tool_schema_valid"][0] == pytest.approx(0.2), "the pairs given, not the rows by position"
    assert "tool_schema_valid" in report.intervals["fine_tuned"], "each side keeps its own interval"
    report = EvalReport(rows=8)
    report.add_intervals(per_row, paired)
    assert "tool_schema_valid" not in report.changes


def test_a_deadline_stops_the_held_out_scoring_after_enough_rows_and_says_so() -> None:
    from trainer_backend.evaluation.preference import _score_rows

    class Split:
        def __len__(self) -> int:
            return 12

        def row(self, k: int) -> dict:
            return {"k": k}

    def score(row: dict) -> dict[str, dict[str, float]]:
        return {"base": {"reward_margin": 0.0}, "fine_tuned": {"reward_margin": float(row["k"] % 2)}}

    late = _score_rows(Split(), 50, deadline=1.0, progress=None, unit="pairs", score=score)  # long past
    assert late.rows == 5 and late.stopped_early and late.counts["fine_tuned"]["reward_margin"] == 5
    whole = _score_rows(Split(), 50, deadline=None, progress=None, unit="pairs", score=score)
    assert whole.rows == 12 and not whole.stopped_early
    assert EvalReport.from_dict(late.to_dict()).stopped_early, "kept in evaluation.json"
