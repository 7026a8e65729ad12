"""The LORA_STUDIO_* settings: one model (trainer_backend/settings.py) that every module reads, README's table
generated from it, today's parsing kept (lenient caps warn and fall back, the rest fail naming the variable)."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from trainer_backend import settings as st
from trainer_backend.settings import INTERNAL, NAMES, SettingsError, SettingWarning, from_env, markdown_table, read

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "trainer_backend"
SOURCES = [*PACKAGE.rglob("*.py"), REPO / "app.py"]
MENTION = re.compile(r"LORA_STUDIO_[A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_*])")  # LORA_STUDIO_DEMO_*: a family


def test_the_readme_table_is_generated_from_the_model() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme, \
        "README's settings table differs from the model: python -m trainer_backend.settings --markdown prints it"


def test_every_variable_named_anywhere_is_a_setting_or_internal() -> None:
    known = set(NAMES) | {name for name, _ in INTERNAL}
    assert len(known) == len(NAMES) + len(INTERNAL), "a name is both a setting and internal"
    unknown = [f"{path.relative_to(REPO)}: {name}" for path in SOURCES
               for name in sorted(set(MENTION.findall(path.read_text(encoding="utf-8")))) if name not in known]
    # README's gradio_client example reads LORA_STUDIO_URL: a variable of that script, not of the app
    unknown += [f"README.md: {name}" for name in sorted(set(MENTION.findall((REPO / "README.md").read_text(
        encoding="utf-8")))) if name not in known | {"LORA_STUDIO_URL"}]
    assert not unknown, "add these to trainer_backend/settings.py (a field, or INTERNAL):\n" + "\n".join(unknown)


def _constants_naming_settings() -> set[str]:
    """Module-level names bound to a setting's variable name anywhere in the package (CAP_ENV = "LORA_...")."""
    names: set[str] = set()
    for path in SOURCES:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(target.elts, node.value.elts))
                else:
                    pairs = [(target, node.value)]
                names |= {t.id for t, v in pairs if isinstance(t, ast.Name) and isinstance(v, ast.Constant)
                          and v.value in NAMES}
    return names


def test_no_module_but_settings_reads_a_setting_from_the_environment() -> None:
    constants = _constants_naming_settings()

    def names_a_setting(key: ast.AST) -> bool:
        return (isinstance(key, ast.Constant) and key.value in NAMES) or \
            (isinstance(key, ast.Name) and key.id in constants) or \
            (isinstance(key, ast.Attribute) and key.attr in constants)

    offenders = []
    for path in SOURCES:
        if path.name == "settings.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            keys: list[ast.AST] = []
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args and \
                    node.func.attr in ("get", "pop", "setdefault", "getenv"):
                keys = [node.args[0]]
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                keys = [node.slice]
            elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
                keys = [node.left]
            if any(names_a_setting(k) for k in keys):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "read these through trainer_backend.settings.settings():\n" + "\n".join(offenders)


def test_defaults_are_what_they_always_were() -> None:
    s = from_env({})
    assert (s.data_dir, s.max_concurrent_jobs, s.train_nice, s.num_processes, s.num_proc, s.hardware) == \
        ("", 1, 10, None, None, "")
    assert (s.prepared_cache, s.prepared_cache_gb, s.allowed_users, s.restore_from_hub) == ("", 10, frozenset(), True)
    assert (s.max_upload_mb, s.max_upload, s.upload_quota, s.upload_total, s.upload_max_age_hours) == \
        (512, "512mb", 2 * 1024**3, 8 * 1024**3, 24)
    assert (s.trusted_proxy_hops, s.public_adapters, s.chat_models, s.chat_memory_gb) == (None, frozenset(), 2, None)
    assert (s.demo_max_new_tokens, s.demo_max_prompt_tokens, s.demo_max_prompt_chars, s.demo_max_messages,
            s.demo_requests_per_minute, s.demo_max_concurrent) == (128, 1024, 2000, 16, 10, 2)
    assert (s.remote_poll, s.remote_stop_grace, s.stop_poll) == (5, 40, 5)


@pytest.mark.parametrize("field, raw, value", [
    ("max_concurrent_jobs", "3", 3), ("max_concurrent_jobs", "0", 1), ("max_concurrent_jobs", " ", 1),
    ("train_nice", "99", 19), ("train_nice", "-4", 0), ("train_nice", "", 10), ("train_nice", "0", 0),
    ("trusted_proxy_hops", "-3", 0), ("trusted_proxy_hops", "40", 16), ("trusted_proxy_hops", "2", 2),
    ("num_proc", "0", 1), ("num_processes", "0", 0), ("num_processes", "", None),
    ("chat_memory_gb", "0", None), ("chat_memory_gb", "1.5", 1.5), ("prepared_cache_gb", "2.5", 2.5),
    ("allowed_users", " Bob, ,alice ", frozenset({"bob", "alice"})),
    ("public_adapters", "Org/Repo, job-1", frozenset({"Org/Repo", "job-1"})),
    ("restore_from_hub", "0", False), ("restore_from_hub", "false", True),  # only "0" ever turned it off
    ("upload_quota", "256kb", 256 * 1024), ("upload_total", "1.5GB", int(1.5 * 1024**3)),
    ("upload_max_age_hours", "0.5", 0.5), ("max_upload_mb", "1", 1), ("remote_poll", "0.5", 0.5),
    ("prepared_cache", "  /x ", "  /x "), ("data_dir", "~/store", "~/store"),  # text is taken as written
])
def test_values_parse_as_they_always_did(field: str, raw: str, value: object) -> None:
    assert read(field, {st.env_name(field): raw}) == value


@pytest.mark.parametrize("field, raw", [("max_concurrent_jobs", "abc"), ("demo_requests_per_minute", "oops"),
                                        ("chat_models", "lots"), ("chat_memory_gb", "inf"), ("num_proc", "4.0"),
                                        ("prepared_cache_gb", "ten"), ("trusted_proxy_hops", "lots")])
def test_a_bad_lenient_value_warns_and_keeps_the_default(field: str, raw: str) -> None:
    with pytest.warns(SettingWarning, match=rf"{st.env_name(field)}='{raw}': expected .*; using the default"):
        assert read(field, {st.env_name(field): raw}) == st.DEFAULTS.model_dump()[field]


def test_a_bad_strict_value_fails_naming_every_variable_and_what_it_takes() -> None:
    env = {"LORA_STUDIO_UPLOAD_QUOTA": "lots", "LORA_STUDIO_REMOTE_POLL": "-1", "LORA_STUDIO_NUM_PROCESSES": "two",
           "LORA_STUDIO_MAX_UPLOAD_MB": "nan", "LORA_STUDIO_CHAT_MODELS": "3"}
    with pytest.raises(SettingsError) as caught:
        from_env(env)
    message = str(caught.value)
    for line in ("LORA_STUDIO_UPLOAD_QUOTA='lots': expected a size such as 512mb or 2gb",
                 "LORA_STUDIO_REMOTE_POLL='-1': expected a number of seconds ≥ 0",
                 "LORA_STUDIO_NUM_PROCESSES='two': expected a whole number",
                 "LORA_STUDIO_MAX_UPLOAD_MB='nan': expected a number of MiB ≥ 0"):
        assert line in message, message
    assert "CHAT_MODELS" not in message


def test_settings_follow_the_environment_and_parse_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORA_STUDIO_CHAT_MODELS", "3")
    first = st.settings()
    assert first.chat_models == 3 and st.settings() is first, "parsed once while nothing changed"
    monkeypatch.setenv("LORA_STUDIO_CHAT_MODELS", "4")
    assert st.settings().chat_models == 4, "a variable changed mid-process is seen at once"
    st.settings.cache_clear()
    assert st.settings() is not first and st.settings().chat_models == 4


def test_the_module_prints_the_table_and_the_current_values(capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert st.main(["--markdown"]) == 0 and capsys.readouterr().out == markdown_table()
    monkeypatch.setenv("LORA_STUDIO_TRAIN_NICE", "5")
    assert st.main([]) == 0 and "LORA_STUDIO_TRAIN_NICE=5\n" in capsys.readouterr().out
    monkeypatch.setenv("LORA_STUDIO_STOP_POLL", "soon")
    assert st.main([]) == 2 and "LORA_STUDIO_STOP_POLL='soon'" in capsys.readouterr().err


def test_the_cli_stops_with_the_message_not_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "LORA_STUDIO_DATA_DIR": str(tmp_path), "LORA_STUDIO_UPLOAD_TOTAL": "all of it"}
    proc = subprocess.run([sys.executable, "-m", "trainer_backend", "jobs", "list"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "error: bad LoRA Studio setting:\n  LORA_STUDIO_UPLOAD_TOTAL='all of it': expected a size" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow  # imports Gradio and the app (~5 s); stops before anything is built or served
def test_the_app_stops_at_start_with_the_message(tmp_path: Path) -> None:
    env = {**os.environ, "LORA_STUDIO_DATA_DIR": str(tmp_path), "LORA_STUDIO_REMOTE_STOP_GRACE": "a while"}
    proc = subprocess.run([sys.executable, str(REPO / "app.py")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "LORA_STUDIO_REMOTE_STOP_GRACE='a while': expected a number of seconds ≥ 0" in proc.stderr
    assert "Traceback" not in proc.stderr
