"""Broken-input suite, part 2: CSV quirks, tokenized rows, lengths, error limits, splits, prompt templates,
other containers, and format detection on the real data samples in tests/data."""
from __future__ import annotations

import json

import pytest

from datahelpers import assert_readable, only, qa, write_csv, write_jsonl
from datahelpers import fails, run, validation_tokenizer_dir  # noqa: F401  (fixtures)
from trainer_backend.data.issues import IssueCollector
from trainer_backend.data.loading import load_split


# ---- CSV -------------------------------------------------------------------------------------------


def conv_json(q: str, a: str) -> str:
    return json.dumps([{"role": "user", "content": q}, {"role": "assistant", "content": a}])


def test_csv_chat_column_with_json_strings_is_messages(run, tmp_path):
    path = write_csv(tmp_path / "chat.csv", ["id", "chat"],
                     [[i, conv_json(f"Hello {i}, how are you?", f"Fine, thanks {i}!")] for i in range(4)])
    prepared = run(path, chat_template="chatml")
    fmt = prepared.report()["format"]
    assert fmt["format"] == "messages" and "'chat'" in fmt["reason"]
    assert prepared.train.examples[0]["messages"][1] == {"role": "assistant", "content": "Fine, thanks 0!"}
    assert prepared.report()["splits"]["train"]["rows_used"] == 4


def test_csv_malformed_json_cell_names_spreadsheet_row_and_column(fails, tmp_path):
    rows = [[1, conv_json("Hi", "Hello!")], [2, conv_json("Hi", "Hello!")],
            [3, '[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "oops"'],  # truncated JSON
            [4, conv_json("Hi", "Hello!")]]
    path = write_csv(tmp_path / "chat.csv", ["id", "chat"], rows)
    exc = fails(path, chat_template="chatml")
    issue = only(exc)
    assert (issue.file, issue.row, issue.column) == (str(path), 4, "chat")  # header = row 1, 3rd data row = row 4
    assert "JSON" in issue.message
    assert issue.fix
    assert_readable(exc, issue)


def test_csv_row_with_too_many_fields(fails, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("question,answer\n"
                    "What is 1+1?,2\n"
                    "What is 2+2?,4,extra\n"        # row 3: one field too many
                    "What is 3+3?,6\n"
                    "What is 4+4?,\n",              # row 5: empty answer (numbered after the rejected row)
                    encoding="utf-8")
    exc = fails(path)
    assert sorted(i.row for i in exc.issues) == [3, 5]
    extra = only(exc, 3)
    assert extra.file == str(path) and "3 fields" in extra.message and "header has 2" in extra.message
    assert "quote" in extra.fix
    empty = only(exc, 5)
    assert empty.column == "answer" and "empty" in empty.message
    assert_readable(exc, extra)


def test_csv_rows_count_like_a_spreadsheet_with_multiline_cells(fails, tmp_path):
    path = write_csv(tmp_path / "train.csv", ["question", "answer"],
                     [["Line one\nline two\nline three?", "yes"], ["Second?", ""]])
    issue = only(fails(path))
    assert (issue.row, issue.column) == (3, "answer")  # a record is one row, however many lines it spans


def test_csv_unclosed_quote_is_an_error_not_a_swallowed_file(fails, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('question,answer\nWhat?,That.\nWho?,"Me.\nWhere?,Here.\nWhen?,Now.\n', encoding="utf-8")
    exc = fails(path)
    issue = only(exc)
    assert (issue.file, issue.row) == (str(path), 3)  # the row where the quote opens
    assert "quote" in issue.message and "quote" in issue.fix
    assert_readable(exc, issue)


def test_csv_with_semicolon_delimiter_is_read_as_columns(run, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("question;answer\nWhat is 1+1?;2\nWhat is 2+2?;4\n", encoding="utf-8")
    prepared = run(path, chat_template="chatml")
    assert prepared.detection.format == "qa"  # not one text column named 'question;answer'
    assert load_split(str(path), "train", IssueCollector(5)).rows[1] == {"question": "What is 2+2?", "answer": "4"}


# ---- tokenized -------------------------------------------------------------------------------------


def test_tokenized_ids_outside_vocabulary(fails, tmp_path):
    path = write_jsonl(tmp_path / "tok.jsonl", [{"input_ids": [5, 6, 7]}, {"input_ids": [5, 10_000_000, 7]},
                                                {"input_ids": [8, 9]}])
    exc = fails(path)
    issue = only(exc)
    assert (issue.file, issue.row, issue.column) == (str(path), 2, "input_ids")
    assert "10000000" in issue.message and "vocabulary" in issue.message and issue.fix
    assert_readable(exc, issue)


def test_tokenized_labels_of_wrong_length(fails, tmp_path):
    path = write_jsonl(tmp_path / "tok.jsonl", [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
                                                {"input_ids": [5, 6, 7], "labels": [6, 7]}])
    exc = fails(path)
    issue = only(exc)
    assert (issue.file, issue.row, issue.column) == (str(path), 2, "labels")
    assert "3" in issue.message and issue.fix


def test_tokenized_vocab_and_label_errors_collected_together(fails, tmp_path):
    path = write_jsonl(tmp_path / "tok.jsonl", [{"input_ids": [5, 10_000_000]}, {"input_ids": [5, 6], "labels": [6]}])
    exc = fails(path)
    assert sorted((i.row, i.column) for i in exc.issues) == [(1, "input_ids"), (2, "labels")]


# ---- lengths ---------------------------------------------------------------------------------------


def long_text(i: int) -> str:
    return f"Row {i}: " + "the quick brown fox jumps over the lazy dog. " * 30


def test_too_long_truncate_is_a_warning_with_counts(run, tmp_path):
    rows = [{"text": long_text(i)} for i in range(3)] + [{"text": "short"} for _ in range(2)]
    prepared = run(write_jsonl(tmp_path / "train.jsonl", rows), too_long="truncate", lengths={"block_size": 32})
    report = prepared.report()
    train = report["splits"]["train"]
    assert train["truncated"] == 3 and train["longer_than_block_size"] == 3 and train["rows_used"] == 5
    assert any("3 of 5" in w and "truncated" in w for w in report["warnings"])
    assert all(w.severity == "warning" for w in prepared.warnings)
    assert max(len(ids) for ids in prepared.train.encoded.input_ids) <= 32


def test_too_long_drop_drops_and_counts(run, tmp_path):
    rows = [{"text": long_text(0)}, {"text": "short one"}, {"text": long_text(2)}, {"text": "short two"}]
    prepared = run(write_jsonl(tmp_path / "train.jsonl", rows), too_long="drop", lengths={"block_size": 32})
    report = prepared.report()
    train = report["splits"]["train"]
    assert train["dropped_too_long"] == 2 and train["rows_used"] == 2 and train["rows_valid"] == 4
    assert any("2 of 4" in w and "dropped" in w for w in report["warnings"])


def test_too_long_drop_everything_is_an_error(fails, tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"text": long_text(i)} for i in range(3)])
    exc = fails(path, too_long="drop", lengths={"block_size": 32})
    issue = only(exc)
    assert issue.file == str(path)
    assert "no usable rows" in issue.message and "block_size" in issue.fix


def test_all_rows_dropped_for_no_loss_with_truncate(fails, tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"question": "word " * 100, "answer": "yes"} for _ in range(3)])
    exc = fails(path, too_long="truncate", chat_template="chatml", lengths={"block_size": 32})
    issue = only(exc)
    assert issue.file == str(path) and "no usable rows" in issue.message


def test_all_rows_dropped_for_no_loss_fix_does_not_repeat_the_setting(fails, tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"question": "word " * 100, "answer": "yes"} for _ in range(3)])
    issue = only(fails(path, too_long="truncate", chat_template="chatml", lengths={"block_size": 32}))
    assert "too_long: truncate" not in issue.fix and "max_prompt_length" in issue.fix


# ---- error limit -----------------------------------------------------------------------------------


def test_max_errors_caps_the_list_and_says_how_many_more(fails, tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"question": f"q{i}?", "answer": ""} for i in range(10)])
    exc = fails(path, max_errors=3)
    assert len(exc.issues) == 3 and exc.truncated == 7
    assert [i.row for i in exc.issues] == [1, 2, 3]
    assert "7 more" in str(exc) and "max_errors" in str(exc)


# ---- splits ----------------------------------------------------------------------------------------


def test_named_valid_split_missing_in_folder(fails, tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [qa(i) for i in range(3)])
    exc = fails(folder, valid_split="validation")
    issue = only(exc)
    assert issue.file == str(folder)
    assert "'validation'" in issue.message and "train.jsonl" in issue.message
    assert issue.fix


def test_folder_with_train_and_validation_files(run, tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [qa(i) for i in range(6)])
    write_jsonl(folder / "validation.jsonl", [qa(i) for i in range(100, 103)])
    write_jsonl(folder / "test.jsonl", [qa(i) for i in range(200, 210)])  # not part of 'validation'
    prepared = run(folder, valid_split="validation", chat_template="chatml")
    splits = prepared.report()["splits"]
    assert splits["train"]["rows_read"] == 6 and splits["train"]["rows_used"] == 6
    assert splits["valid"]["rows_read"] == 3 and splits["valid"]["rows_used"] == 3
    assert {ref[0] for ref in prepared.valid.refs} == {str(folder / "validation.jsonl")}


def test_error_in_validation_file_names_that_file(fails, tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [qa(i) for i in range(3)])
    write_jsonl(folder / "valid.jsonl", [qa(1), {"question": "no answer?", "answer": ""}])
    issue = only(fails(folder, valid_split="valid"))
    assert (issue.file, issue.row, issue.column) == (str(folder / "valid.jsonl"), 2, "answer")


def test_valid_split_auto_holds_out_rows_and_reports_them(run, tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [qa(i) for i in range(40)])
    prepared = run(path, valid_split="auto", chat_template="chatml")
    report = prepared.report()
    held = report["splits"]["valid"]["rows_valid"]
    assert held >= 1
    assert held + report["splits"]["train"]["rows_valid"] == 40
    assert report["splits"]["valid"]["rows_used"] == held
    assert any("held out" in n and f"{held} of 40" in n for n in report["notes"])


def test_empty_validation_file_names_the_file(fails, tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [qa(i) for i in range(3)])
    (folder / "valid.jsonl").write_text("\n", encoding="utf-8")
    issue = only(fails(folder, valid_split="valid"))
    assert "no rows" in issue.message
    assert issue.file in (str(folder), str(folder / "valid.jsonl"))


def test_valid_split_as_a_file_path(run, fails, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [qa(i) for i in range(4)])
    valid = write_jsonl(tmp_path / "held_out.jsonl", [qa(1), qa(2)])
    prepared = run(train, valid_split=str(valid), chat_template="chatml")
    assert prepared.report()["splits"]["valid"]["rows_used"] == 2
    assert {f for f, _ in prepared.valid.refs} == {str(valid)}

    missing = tmp_path / "nope" / "valid.jsonl"
    issue = only(fails(train, valid_split=str(missing), chat_template="chatml"))
    assert issue.file == str(missing) and "no such file" in issue.message and issue.fix


def test_single_file_has_no_named_valid_split(fails, tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [qa(i) for i in range(3)])
    issue = only(fails(path, valid_split="validation"))
    assert "'validation'" in issue.message and "auto" in issue.fix


# ---- prompt templates ------------------------------------------------------------------------------


def test_prompt_template_with_missing_column_names_the_placeholder(fails, tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [qa(1), qa(2)])
    exc = fails(path, prompt_template={"prompt": "Q: {question}\nContext: {context}\nA:", "response": " {answer}"})
    assert [i.row for i in exc.issues] == [1, 2]
    issue = exc.issues[0]
    assert issue.file == str(path) and issue.column == "context"
    assert "{context}" in issue.message and "question" in issue.message  # lists the columns there are
    assert issue.fix
    assert_readable(exc, issue)


# ---- the same rows from other containers -----------------------------------------------------------


def test_parquet_and_json_columnar_load_the_same_rows_as_jsonl(run, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": f"Say {i}.", "input": "" if i % 2 else f"ctx {i}", "output": f"{i}"} for i in range(5)]
    jsonl = write_jsonl(tmp_path / "train.jsonl", rows)
    parquet = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    columnar = tmp_path / "train.json"
    columnar.write_text(json.dumps({k: [r[k] for r in rows] for k in rows[0]}), encoding="utf-8")

    results = [run(p, chat_template="chatml") for p in (jsonl, parquet, columnar)]
    for path, prepared in zip((jsonl, parquet, columnar), results):
        assert prepared.detection.format == "alpaca"
        assert load_split(str(path), "train", IssueCollector(5)).rows == rows
        assert [r for _, r in prepared.train.refs] == [1, 2, 3, 4, 5]
    assert results[1].train.examples == results[0].train.examples == results[2].train.examples
    assert results[1].train.encoded.input_ids == results[0].train.encoded.input_ids


def test_line_numbers_survive_unicode_line_separators(fails, tmp_path):
    # U+2028 / U+0085 inside a JSON string are not line breaks of the file.
    path = write_jsonl(tmp_path / "train.jsonl", [
        '{"question": "a\u2028b\u0085c?", "answer": "d\u2029e"}', qa(2), {"question": "q?", "answer": ""}])
    issue = only(fails(path))
    assert issue.row == 3


# ---- format detection on the real datasets ---------------------------------------------------------


REAL_FILES = [
    # (file, expected format, columns the reason must mention)
    ("alpaca/self_instruct_seed_tasks.jsonl", "alpaca", ["instruction", "input", "output"]),
    ("alpaca/gpteacher_roleplay.jsonl", "alpaca", ["instruction", "input", "output"]),
    ("chat/msft_gsm8k_chat_train_messages.jsonl", "messages", ["messages"]),
    ("chat/oasst_en100_messages.jsonl", "messages", ["messages"]),
    ("chat/fastchat_dummy_conversation_sharegpt.jsonl", "sharegpt", ["conversations"]),
    ("chat/oasst_en100_sharegpt.jsonl", "sharegpt", ["conversations"]),
    ("qa/gsm8k_train.jsonl", "qa", ["question", "answer"]),
    ("preference/orca_dpo_pairs_validation_flat.jsonl", "preference", ["chosen", "rejected"]),
    ("preference/orca_dpo_pairs_validation_openai.jsonl", "preference", ["preferred_output", "non_preferred_output"]),
    ("text/c4_demo.jsonl", "text", ["text"]),
    ("text/tinyshakespeare.txt", "text", ["text"]),
]


@pytest.mark.parametrize("name,fmt,columns", REAL_FILES, ids=[f[0] for f in REAL_FILES])
def test_real_dataset_format_detection(run, real_data, name, fmt, columns):
    prepared = run(real_data / name, max_rows=8, chat_template="chatml", lengths={"block_size": 1024})
    det = prepared.report()["format"]
    assert det["format"] == fmt, det
    for c in columns:
        assert f"'{c}'" in det["reason"], det["reason"]
    train = prepared.report()["splits"]["train"]
    assert train["rows_read"] == train["rows_valid"] == 8
    assert train["rows_used"] >= 1
    assert all(ref[0] == str(real_data / name) for ref in prepared.train.refs)


def test_real_messages_keep_the_system_turn(run, real_data):
    prepared = run(real_data / "chat/msft_gsm8k_chat_train_messages.jsonl", max_rows=3, chat_template="chatml",
                   lengths={"block_size": 1024})
    for ex in prepared.train.examples:
        assert [m["role"] for m in ex["messages"]][:3] == ["system", "user", "assistant"]
    assert "<|im_start|>system" in prepared.report()["sample"]["rendered"]


def test_real_gsm8k_with_u2028_loads_every_line(real_data):
    path = real_data / "qa/gsm8k_train.jsonl"
    raw = path.read_bytes()
    assert "\u2028".encode() in raw  # the quirk this test is about
    issues = IssueCollector(20)
    split = load_split(str(path), "train", issues)
    assert not issues.errors, [str(i) for i in issues.errors]
    assert len(split.rows) == raw.count(b"\n")
    assert [r for _, r in split.refs] == list(range(1, len(split.rows) + 1))
    assert any("\u2028" in r["question"] + r["answer"] for r in split.rows)


def test_real_preference_openai_prompt_comes_from_input_messages(run, real_data):
    prepared = run(real_data / "preference/orca_dpo_pairs_validation_openai.jsonl", max_rows=2,
                   chat_template="chatml", lengths={"block_size": 1024})
    ex = prepared.train.examples[0]
    assert [m["role"] for m in ex["prompt"]] == ["system", "user"]
    assert [m["role"] for m in ex["chosen"]] == ["assistant"] and ex["chosen"] != ex["rejected"]


def test_json_nested_thousands_of_levels_is_a_row_error_not_a_crash(fails, tmp_path):
    """Untrusted data is bounded too: Python's JSON parser gives up on deep nesting (RecursionError); the row is
    named, the rest of the file is read."""
    deep = "[" * 50_000 + "]" * 50_000
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "a fine row"}\n{"text": ' + deep + "}\n", encoding="utf-8")
    issues = IssueCollector(20)
    raw = load_split(str(path), "train", issues)
    assert raw is not None and len(raw.rows) == 1
    assert [(i.row, "too deep" in i.message) for i in issues.errors] == [(2, True)]
    chat = write_csv(tmp_path / "chat.csv", ["chat"], [[conv_json("Hi", "Hello!")], ["[" * 50_000 + "]" * 50_000]])
    issue = only(fails(chat, chat_template="chatml", format="messages", column_mapping={"messages": "chat"}))
    assert (issue.row, issue.column) == (3, "chat") and "nested" in issue.message
