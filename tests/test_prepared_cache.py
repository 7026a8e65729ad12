"""The prepared-data cache and parallel preparation: a hit trains on exactly what a fresh preparation gives, every
input of the key rebuilds, damaged entries are rebuilt (never read), workers report the original rows, the size
cap evicts the least recently used, `cache list|clear`, and progress for long preparations."""
from __future__ import annotations

import gc
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainer_backend.data import DataError, prepare_data
from trainer_backend.data import fingerprint, pipeline
from trainer_backend.data import prepared_cache as cache

CHAT = "chat/oasst_en100_messages.jsonl"


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "prepared"
    monkeypatch.setenv(cache.CACHE_ENV, str(folder))
    monkeypatch.delenv(cache.CAP_ENV, raising=False)
    return folder


@pytest.fixture
def prep(tiny_model_dir: Path, cache_dir: Path):
    """prep(spec, **kw): prepare with a fresh tokenizer (the pipeline installs the chat template on it)."""
    from transformers import AutoTokenizer

    def run(spec: Any, tokenizer: Any = None, **kw: Any) -> Any:
        return prepare_data(spec, tokenizer or AutoTokenizer.from_pretrained(tiny_model_dir), **kw)
    return run


def tensors(prepared: Any) -> dict[str, bytes]:
    """Every training tensor's bytes, split by split, as the collator builds them (int64 per row)."""
    out = {}
    for name, split in prepared.splits.items():
        rows = split.dataset()
        for column in rows.column_names:
            out[f"{name}.{column}"] = b"|".join(np.asarray(x, dtype=np.int64).tobytes() for x in rows[column])
    return out


def chat_spec(make_spec: Any, real_data: Path, **data: Any) -> Any:
    return make_spec({"path": str(real_data / CHAT), "chat_template": "chatml", "valid_split": "auto", **data})


def test_a_cache_hit_trains_on_byte_identical_tensors(prep, make_spec, real_data, monkeypatch) -> None:
    spec = chat_spec(make_spec, real_data)
    fresh = prep(spec)
    hit = prep(spec)
    assert (fresh.cache, hit.cache) == ("built", "hit") and hit.folder == fresh.folder
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    plain = prep(spec)
    assert plain.cache == "off"
    assert tensors(hit) == tensors(fresh) == tensors(plain) and tensors(hit)["train.input_ids"]
    assert hit.report() == fresh.report() == plain.report()
    assert [str(w) for w in hit.warnings] == [str(w) for w in plain.warnings]
    folder = plain.folder
    del plain
    gc.collect()
    assert not folder.exists(), "with the cache off, the temporary folder goes with the prepared data"


def test_each_input_of_the_key_rebuilds(prep, make_spec, real_data, tmp_path, tiny_model_dir, monkeypatch) -> None:
    from transformers import AutoTokenizer

    data = tmp_path / "chats.jsonl"
    shutil.copy(real_data / CHAT, data)
    spec = chat_spec(make_spec, real_data, path=str(data))
    assert prep(spec).cache == "built"
    assert prep(spec).cache == "hit"
    moved = tmp_path / "elsewhere.jsonl"
    shutil.copy(data, moved)
    again = prep(chat_spec(make_spec, real_data, path=str(moved)))
    assert again.cache == "hit" and again.train.ref(0)[0] == str(moved), "same bytes elsewhere: reused, renamed"

    def rebuilds(spec: Any, **kw: Any) -> None:
        assert prep(spec, **kw).cache == "built"
    rebuilds(chat_spec(make_spec, real_data, path=str(data), system_prompt="Be brief."))      # data section
    rebuilds(chat_spec(make_spec, real_data, path=str(data), chat_template="zephyr"))         # template text
    rebuilds(make_spec({"path": str(data), "chat_template": "chatml", "valid_split": "auto"},
                       lengths={"block_size": 64}))                                             # lengths
    rebuilds(make_spec({"path": str(data), "chat_template": "chatml", "valid_split": "auto"},
                       training={"seed": 7}))                                                   # the held-out rows
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.add_tokens(["<new-token>"])
    rebuilds(spec, tokenizer=tok)                                                               # tokenizer
    monkeypatch.setattr(fingerprint, "PIPELINE_VERSION", fingerprint.PIPELINE_VERSION + 1000)
    rebuilds(spec)                                                                              # pipeline version
    monkeypatch.undo()
    with data.open("a", encoding="utf-8") as fh:                                                # file contents
        fh.write(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                          {"role": "assistant", "content": "Hello!"}]}) + "\n")
    rebuilds(spec)
    assert prep(spec).cache == "hit"


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "manifest"])
def test_a_damaged_entry_is_rebuilt_not_read(prep, make_spec, real_data, damage) -> None:
    spec = chat_spec(make_spec, real_data)
    first = prep(spec)
    expected, folder = tensors(first), first.folder
    del first  # its shards are memory-mapped: damage them only once nothing reads them
    gc.collect()
    shard = sorted(folder.glob("records-*.arrow"))[0]
    raw = bytearray(shard.read_bytes())
    if damage == "truncate":
        shard.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
        shard.write_bytes(raw)
    elif damage == "delete":
        shard.unlink()
    else:
        (folder / cache.MANIFEST).write_text("{not json", encoding="utf-8")
    again = prep(spec)
    assert again.cache.startswith("rebuilt"), again.cache
    assert {"truncate": "truncated", "flip": "checksum", "delete": "missing", "manifest": "manifest"}[damage] \
        in again.cache
    assert tensors(again) == expected
    assert prep(spec).cache == "hit"


def test_a_damaged_derived_artefact_is_rebuilt(prep, make_spec, real_data) -> None:
    from datasets import Dataset

    from trainer_backend.data.workers import write_shard

    prepared = prep(chat_spec(make_spec, real_data))
    built = []

    def build(path: Path) -> Any:
        import pyarrow as pa

        built.append(path)
        write_shard(path, pa.table({"x": list(range(1000))}))
        return Dataset.from_file(str(path))
    assert prepared.derived("demo.arrow", build)["x"][:3] == [0, 1, 2]
    assert prepared.derived("demo.arrow", build)["x"][-1] == 999 and len(built) == 1
    path = built[0]
    path.write_bytes(path.read_bytes()[:-64])
    assert len(prepared.derived("demo.arrow", build)) == 1000 and len(built) == 2


def _qa_file(path: Path, rows: int, bad: tuple[int, ...] = ()) -> Path:
    lines = [json.dumps({"question": f"What is {i} plus {i}?", "answer": "" if i in bad else f"{2 * i}"})
             for i in range(1, rows + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_workers_report_the_original_rows_and_prepare_the_same_tensors(prep, make_spec, tmp_path,
                                                                       monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "WORKER_MIN_ROWS", 0)  # workers and many chunks, even for 600 rows
    monkeypatch.setattr(pipeline, "CHUNK_ROWS", (64, 64))
    bad = _qa_file(tmp_path / "bad.jsonl", 600, bad=(7, 333, 598))
    spec = make_spec({"path": str(bad), "chat_template": "chatml"})
    errors = {}
    for n in (1, 2):
        with pytest.raises(DataError) as info:
            prep(spec, num_proc=n)
        errors[n] = [(i.file, i.row, i.message) for i in info.value.issues]
    assert errors[2] == errors[1] and [row for _, row, _ in errors[2]] == [7, 333, 598]
    assert all(file == str(bad) and "empty" in message for file, _, message in errors[2])
    capped = make_spec({"path": str(bad), "chat_template": "chatml", "max_errors": 2})
    with pytest.raises(DataError) as info:
        prep(capped, num_proc=2)
    assert [i.row for i in info.value.issues] == [7, 333] and info.value.truncated == 1

    good = make_spec({"path": str(_qa_file(tmp_path / "good.jsonl", 600)), "chat_template": "chatml",
                      "valid_split": "auto"})
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    one, two = prep(good, num_proc=1), prep(good, num_proc=2)
    assert tensors(one) == tensors(two) and one.report() == two.report()
    assert two.train.refs == one.train.refs and two.valid.refs == one.valid.refs


def test_the_size_cap_evicts_the_least_recently_used(prep, make_spec, tmp_path, cache_dir, monkeypatch) -> None:
    keys = {}
    for name in "abcd":
        spec = make_spec({"path": str(_qa_file(tmp_path / f"{name}.jsonl", 40 + ord(name))), "chat_template": "chatml"})
        if name == "d":  # room for about two entries: the two least recently used must go
            size = max(e.size for e in cache.entries(cache_dir))
            monkeypatch.setenv(cache.CAP_ENV, str(2.5 * size / 1024**3))
        keys[name] = prep(spec).folder.name
        os.utime(cache_dir / keys[name] / cache.MANIFEST, (1000 + ord(name), 1000 + ord(name)))
        if name == "c":
            a = make_spec({"path": str(tmp_path / "a.jsonl"), "chat_template": "chatml"})
            assert prep(a).cache == "hit"  # a is used again: now the most recent of a, b, c
    left = {e.path.name for e in cache.entries(cache_dir)}
    assert left == {keys["a"], keys["d"]}


def test_cache_list_and_clear(prep, make_spec, tmp_path, cache_dir, capsys) -> None:
    from trainer_backend.cli import main

    for name in ("one", "two"):
        prep(make_spec({"path": str(_qa_file(tmp_path / f"{name}.jsonl", 30)), "chat_template": "chatml",
                        "system_prompt": name}))
    found = cache.entries(cache_dir)
    assert main(["cache", "list", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "2 entries" in out and all(e.key[:12] in out for e in found) and "qa" in out and "PROBLEM" not in out
    assert main(["cache", "clear", found[0].key[:10]]) == 0
    assert "removed 1 entry" in capsys.readouterr().out
    assert [e.key for e in cache.entries(cache_dir)] == [found[1].key]
    assert main(["cache", "clear"]) == 0 and cache.entries(cache_dir) == []


def test_progress_callbacks_and_job_events(prep, make_spec, real_data, tmp_path) -> None:
    from trainer_backend.data.progress import PreparationProgress, preparation_progress
    from trainer_backend.jobs.progress import EventsReader
    from trainer_backend.run_events import Preparing, Start
    from trainer_backend.training.events import EventLog
    from trainer_backend.ui.job_view import progress_html

    seen: list[PreparationProgress] = []
    spec = chat_spec(make_spec, real_data)
    with preparation_progress(seen.append):  # how the app's buttons hand down gr.Progress
        prep(spec)
    assert seen[0].phase == "preparing" and seen[-1].phase == "done" and seen[-1].fraction == 1.0
    assert seen[-1].rows == seen[-1].total_rows == 100 and "preparing data 100%" in seen[-1].line()
    seen.clear()
    prep(spec, progress=seen.append)
    assert [p.phase for p in seen] == ["cached"]

    log = EventLog(tmp_path / "job")
    log.write(Preparing(phase="preparing", progress=0.37, rows=370, total_rows=1000, eta_seconds=12.0))
    reader = EventsReader(log.path)
    reader.poll()
    snap = reader.snapshot().to_dict(series=False)
    assert snap["preparing_percent"] == 37.0
    assert "preparing data 37%" in progress_html({"status": "running", "progress": snap})
    log.write(Start(max_steps=10))
    reader.poll()
    assert reader.snapshot().preparing_percent is None


def test_a_hub_split_is_keyed_by_its_revision(prep, make_spec, monkeypatch) -> None:
    """Hub datasets stream like files; the key holds the fingerprint `datasets` gives the downloaded revision."""
    from datasets import Dataset

    from trainer_backend.data import loading

    rows = [{"question": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(30)]
    revision = {"rows": rows}
    monkeypatch.setattr(loading, "_load_hub_split", lambda *a: Dataset.from_list(revision["rows"]))
    spec = make_spec({"path": "someone/qa-pairs", "chat_template": "chatml"})
    first = prep(spec)
    assert first.cache == "built" and first.train.ref(3) == ("someone/qa-pairs[train]", 4)
    assert prep(spec).cache == "hit"
    revision["rows"] = rows[:-1] + [{"question": "What is 1+1?", "answer": "2"}]  # a new revision
    assert prep(spec).cache == "built"


def test_training_processes_use_the_cache_of_their_data_dir(tmp_path, monkeypatch) -> None:
    from trainer_backend.jobs.supervisor import _prepared_cache_env

    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    assert _prepared_cache_env(tmp_path) == {cache.CACHE_ENV: str(tmp_path.resolve() / "prepared-data")}
    monkeypatch.setenv(cache.CACHE_ENV, "/elsewhere")
    assert _prepared_cache_env(tmp_path) == {}  # an explicit choice is passed on as it is
