"""Broken-input suite, part 1: unreadable files, conversations, preference rows. Bad data gets a clear error
naming file, row and column, with a fix, before training (part 2: test_validation_files.py)."""
from __future__ import annotations

import json

from datahelpers import assert_readable, chat, only, qa, write_jsonl
from datahelpers import fails, run, validation_tokenizer_dir  # noqa: F401  (fixtures)


# ---- files that cannot be read ---------------------------------------------------------------------


def test_empty_file(fails, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"")
    exc = fails(path)
    issue = only(exc)
    assert issue.file == str(path)
    assert "empty" in issue.message
    assert issue.fix


def test_jsonl_with_only_blank_lines_is_empty(fails, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n   \n\n\t\n", encoding="utf-8")
    issue = only(fails(path))
    assert issue.file == str(path) and "empty" in issue.message and issue.fix


def test_nonexistent_local_path(fails, tmp_path):
    path = tmp_path / "no_such_dir" / "train.jsonl"
    exc = fails(path)
    issue = only(exc)
    assert issue.file == str(path)
    assert "not found" in issue.message
    assert issue.fix and "path" in issue.fix
    assert_readable(exc, issue)


def test_not_utf8_names_the_line_with_the_bad_byte(fails, tmp_path):
    path = tmp_path / "train.jsonl"
    lines = [json.dumps(qa(1)), json.dumps(qa(2)), '{"question": "Caf\u00e9?", "answer": "Oui."}', json.dumps(qa(4))]
    path.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    exc = fails(path)
    issue = only(exc)
    assert (issue.file, issue.row) == (str(path), 3)
    assert "UTF-8" in issue.message and "0xe9" in issue.message
    assert "UTF-8" in issue.fix
    assert_readable(exc, issue)


def test_utf16_file_says_utf16(fails, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes("".join(json.dumps(qa(i)) + "\n" for i in range(3)).encode("utf-16"))
    issue = only(fails(path))
    assert (issue.file, issue.row) == (str(path), 1)
    assert "UTF-16" in issue.message and "utf-16" in issue.fix


def test_invalid_json_line_is_reported_and_other_rows_still_validated(fails, tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [
        qa(1),
        '{"question": "unterminated", "answer": "x"',      # line 2: broken JSON
        qa(3),
        {"question": "Empty answer?", "answer": "  "},      # line 4: empty response
        qa(5),
        {"question": "Where is the answer?"},               # line 6: missing column
    ])
    exc = fails(path)
    assert sorted(i.row for i in exc.issues) == [2, 4, 6]  # collected in one DataError, not stopped at line 2
    bad_json = only(exc, 2)
    assert bad_json.file == str(path) and "invalid JSON" in bad_json.message and bad_json.fix
    empty = only(exc, 4)
    assert empty.column == "answer" and "empty" in empty.message and empty.fix
    missing = only(exc, 6)
    assert missing.column == "answer" and "missing column 'answer'" in missing.message
    for issue in exc.issues:
        assert_readable(exc, issue)


def test_jsonl_line_that_is_not_an_object(fails, tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [qa(1), "[1, 2, 3]", qa(3)])
    issue = only(fails(path))
    assert (issue.file, issue.row) == (str(path), 2)
    assert "expected a JSON object" in issue.message and issue.fix


def test_json_array_with_a_non_object(fails, tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps([qa(1), qa(2), "just a string", qa(4)], indent=2), encoding="utf-8")
    exc = fails(path)
    issue = only(exc)
    assert (issue.file, issue.row) == (str(path), 3)  # the 3rd record of the array
    assert "str" in issue.message and "object" in issue.message
    assert issue.fix
    assert_readable(exc, issue)


def test_missing_mapped_column(fails, tmp_path):
    rows = [{"question": f"q{i}?", "output": f"a{i}"} for i in range(3)]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    exc = fails(path, column_mapping={"response": "answer"})
    assert [i.row for i in exc.issues] == [1, 2, 3]
    issue = exc.issues[0]
    assert issue.file == str(path) and issue.column == "answer"
    assert "missing column 'answer'" in issue.message
    assert "output" in issue.message  # says what the row does have
    assert "column_mapping" in issue.fix
    assert_readable(exc, issue)


# ---- conversations ---------------------------------------------------------------------------------


GOOD_CHAT = chat(("user", "Hi there"), ("assistant", "Hello! How can I help you today?"))


def test_conversation_without_assistant_turn(fails, tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [GOOD_CHAT, chat(("user", "Hello?"), ("user", "Anyone?")), GOOD_CHAT])
    exc = fails(path, chat_template="chatml")
    issue = only(exc)
    assert (issue.file, issue.row, issue.column) == (str(path), 2, "messages")
    assert "no assistant" in issue.message and issue.fix
    assert_readable(exc, issue)


def test_unknown_role_names_the_role_and_suggests_column_mapping_roles(fails, run, tmp_path):
    rows = [GOOD_CHAT, chat(("user", "Hi"), ("bot", "Hello!")), chat(("user", "Bye"), ("bot", "Goodbye!"))]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    exc = fails(path, chat_template="chatml")
    assert [i.row for i in exc.issues] == [2, 3]
    issue = exc.issues[0]
    assert issue.file == str(path) and issue.column == "messages"
    assert "'bot'" in issue.message
    assert all(r in issue.message for r in ("user", "assistant", "system"))
    assert "column_mapping.roles" in issue.fix
    assert_readable(exc, issue)

    prepared = run(path, chat_template="chatml", column_mapping={"roles": {"bot": "assistant"}})
    assert prepared.report()["splits"]["train"]["rows_valid"] == 3
    assert prepared.train.examples[1]["messages"][1] == {"role": "assistant", "content": "Hello!"}


def test_system_message_not_first(fails, tmp_path):
    rows = [GOOD_CHAT, chat(("user", "Hi"), ("system", "Be brief."), ("assistant", "Hello!"))]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    issue = only(fails(path, chat_template="chatml"))
    assert (issue.file, issue.row, issue.column) == (str(path), 2, "messages")
    assert "system" in issue.message and "first" in issue.message
    assert issue.fix


def test_empty_assistant_content(fails, tmp_path):
    rows = [GOOD_CHAT, GOOD_CHAT, chat(("user", "Hi"), ("assistant", "   "))]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    issue = only(fails(path, chat_template="chatml"))
    assert (issue.file, issue.row, issue.column) == (str(path), 3, "messages")
    assert "assistant" in issue.message and "empty" in issue.message and issue.fix


def test_messages_without_chat_template_asks_for_one(fails, tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [GOOD_CHAT, GOOD_CHAT])
    exc = fails(path, chat_template="none")
    issue = only(exc)
    assert issue.file == str(path)
    assert "chat template" in issue.message and "chat_template" in issue.fix
    assert "chatml" in issue.fix


# ---- preference ------------------------------------------------------------------------------------


def pref(i: int, chosen: str = "A good answer.", rejected: str = "A bad answer.") -> dict:
    return {"prompt": f"Question {i}?", "chosen": chosen, "rejected": rejected}


def test_preference_chosen_equals_rejected(fails, tmp_path):
    path = write_jsonl(tmp_path / "pref.jsonl", [pref(1), pref(2, "Same.", "Same."), pref(3)])
    exc = fails(path, chat_template="chatml")
    issue = only(exc)
    assert (issue.file, issue.row, issue.column) == (str(path), 2, "chosen")
    assert "identical" in issue.message and issue.fix
    assert_readable(exc, issue)


def test_preference_empty_chosen(fails, tmp_path):
    path = write_jsonl(tmp_path / "pref.jsonl", [pref(1), pref(2), pref(3, chosen="")])
    issue = only(fails(path, chat_template="chatml"))
    assert (issue.file, issue.row, issue.column) == (str(path), 3, "chosen")
    assert "empty" in issue.message and issue.fix
