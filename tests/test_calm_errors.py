"""What a person sees when data or a path is wrong (issue 27): one line per distinct problem with how many rows it
affects and which, the file as they named it (never a server path), the fix as the page's control; an upload is
stored once however often Check / Plan / Start send it; the model box refuses what Check data would refuse, naming
where a local model may live."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from datahelpers import fails, run, validation_tokenizer_dir, write_jsonl  # noqa: F401  (fixtures)


@pytest.fixture
def studio(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """A local app's service (no Space), Gradio's upload folder under tmp_path, the tiny model in its models."""
    from trainer_backend.jobs.manager import JobManager
    from trainer_backend.ui.service import StudioService

    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    service = StudioService(JobManager(tmp_path / "data", autostart=False))
    model = shutil.copytree(tiny_model_dir, tmp_path / "data" / "models" / "tiny")
    return service, model


def gradio_upload(tmp_path: Path, name: str, rows: list[dict], folder: str = "0f0f") -> str:
    """A file as Gradio hands it over: <GRADIO_TEMP_DIR>/<hash>/<the user's own file name>."""
    path = tmp_path / "gradio" / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def grpo_spec(model: Path, **training: object) -> str:
    return yaml.safe_dump({"model": {"base_model": str(model)}, "data": {"path": "x"},
                           "training": {"trainer": "grpo", "max_steps": 1, "use_cpu": True, **training},
                           "grpo": {"rewards": [{"type": "exact_match", "name": "correct", "column": "answer"}]}})


def test_a_column_missing_from_every_row_is_one_line_naming_the_users_file_and_the_rewards_table(
        studio, tmp_path: Path) -> None:
    service, model = studio
    rows = [{"prompt": f"Which is a fruit, truck or mango? ({i})", "answer": "mango"} for i in range(40)]
    for i in (4, 9, 14, 19, 24, 29, 34, 39):  # rows 5, 10, ..., 40 (1-based) lack the reward's column
        del rows[i]["answer"]
    rows[1]["prompt"] = ""                     # row 2: another problem, on a line of its own
    upload = gradio_upload(tmp_path, "my prompts.jsonl", rows)
    out = service.validate(grpo_spec(model), upload)
    assert not out["ok"]
    errors = out["errors"]
    assert len(errors) == 2, errors
    missing = next(e for e in errors if "missing column 'answer'" in e)
    assert missing.startswith("my prompts.jsonl, row 5, 10, 15 and 5 more (8 rows), column 'answer':")
    assert "Rewards table" in missing and "grpo.rewards" in missing  # the page's control, and the key for scripts
    assert any(e.startswith("my prompts.jsonl, row 2, column 'prompt'") for e in errors)
    assert not any(str(tmp_path) in e or "/uploads/" in e or "gradio" in e for e in errors), errors


def test_rows_past_max_errors_still_count_towards_their_line(fails, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [{"question": f"q{i}?", "answer": ""} for i in range(50)] +
                       [{"question": "Where?"}])
    exc = fails(path, max_errors=3)
    assert len(exc.issues) == 3 and exc.truncated == 48  # the structured list stays capped for scripts
    lines = exc.lines(lambda f: Path(f).name)
    assert lines[0].startswith("train.jsonl, row 1, 2, 3 and 47 more (50 rows), column 'answer': response is empty")
    assert lines[1].startswith("train.jsonl, row 51, column 'answer': missing column 'answer'")  # past the cap
    assert "Column mapping" in lines[1] and "data.column_mapping.response" in lines[1]
    assert len(lines) == 2  # nothing left uncounted: no "... and N more"


def test_a_plan_or_start_that_fails_names_no_server_path(studio, tmp_path: Path) -> None:
    service, model = studio
    upload = gradio_upload(tmp_path, "broken data.jsonl", [{"prompt": "Hi?"}])
    plan = service.plan(grpo_spec(model), upload)
    assert not plan["ok"] and plan["errors"][0].startswith("broken data.jsonl, row 1, column 'answer'")
    spec = yaml.safe_load(grpo_spec(model))
    spec["data"]["path"] = str(tmp_path / "data" / "nothing.jsonl")
    checked = service.validate(yaml.safe_dump(spec))
    assert not checked["ok"] and "nothing.jsonl" in checked["errors"][0]
    assert str(tmp_path) not in " ".join(checked["errors"])


def test_an_upload_is_stored_once_per_content(studio, tmp_path: Path) -> None:
    from trainer_backend.uploads import portable_dataset_name

    service, _ = studio
    rows = [{"question": "What is 2 plus 2?", "answer": "4"}]
    upload = gradio_upload(tmp_path, "qa.jsonl", rows)
    stored = {service.store_dataset(upload) for _ in range(7)}  # one visit: Check, Plan, Start, ... each send it
    assert len(stored) == 1
    again = service.store_dataset(gradio_upload(tmp_path, "qa.jsonl", rows, folder="1e1e"))  # re-uploaded
    other = service.store_dataset(gradio_upload(tmp_path, "qa.jsonl", rows * 2, folder="2d2d"))  # same name
    assert again in stored and other not in stored
    assert json.loads(other.read_text().splitlines()[1]) == rows[0]  # the second file kept its own content
    assert len(list((tmp_path / "data" / "uploads").rglob("*.jsonl"))) == 2
    # a saved config names the dataset portably: the upload's name, a sample as examples/<name>
    assert portable_dataset_name(str(other), service.data_dir) == "qa.jsonl"
    assert portable_dataset_name(upload, service.data_dir) == "qa.jsonl"
    from trainer_backend.uploads import EXAMPLES_DIR

    assert portable_dataset_name(str(EXAMPLES_DIR / "capitals.jsonl"), service.data_dir) == "examples/capitals.jsonl"
    assert portable_dataset_name("HuggingFaceH4/no_robots", service.data_dir) == "HuggingFaceH4/no_robots"


def test_the_model_box_refuses_what_check_data_refuses_and_names_where_models_may_live(
        studio, tmp_path: Path, tiny_model_dir: Path) -> None:
    service, model = studio
    with pytest.raises(ValueError) as refused:
        service.model_fit(str(tiny_model_dir), "none")  # a real model folder, outside the app's folders
    where = str((tmp_path / "data" / "models").resolve())
    assert where in str(refused.value) and "Hub id" in str(refused.value)
    spec = yaml.safe_load(grpo_spec(tiny_model_dir))
    spec["data"]["path"] = str(Path(__file__).resolve().parents[1] / "examples" / "capitals.jsonl")
    checked = service.validate(yaml.safe_dump(spec))
    assert not checked["ok"] and where in checked["errors"][0]
    inside = service.model_fit(str(model), "none")  # inside the models folder: estimated, and named as the user does
    assert "parameters" in inside and str(tmp_path) not in inside and "**tiny**" in inside
