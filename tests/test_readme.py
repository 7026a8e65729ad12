"""README's code blocks run as written (issue 14): the gradio_client script against a started app, and the
CLI quick start in a temp folder. The documentation cannot drift from the product without this failing."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_block(heading: str, language: str) -> str:
    """The first ```language block after `heading` in README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(heading)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match, f"no {language} block after {heading!r}"
    return match.group(1)


@pytest.mark.slow
def test_gradio_client_block_runs_verbatim_to_the_end(shared_app) -> None:
    code = readme_block("### Scripting it with gradio_client", "python")
    assert 'os.environ.get("LORA_STUDIO_URL"' in code  # the only substitution: where the app runs
    proc = subprocess.run([sys.executable, "-c", code + "\nprint('README BLOCK DONE')"], cwd=REPO, timeout=420,
                          capture_output=True, text=True, env={**os.environ, "LORA_STUDIO_URL": shared_app.url})
    out = proc.stdout
    assert proc.returncode == 0, (out[-2000:], proc.stderr[-4000:])
    assert out.rstrip().endswith("README BLOCK DONE")
    assert "'ok': True" in out and "succeeded 150" in out  # validated, then trained to the last step
    assert "'fine_tuned'" in out and "'rows'" in out        # /compare and /evaluate answered
    assert "no job 'no-such-job'" in out and "/list_jobs" in out and "verbose error" not in out


def _commands(block: str) -> list[list[str]]:
    """The block's `python -m trainer_backend ...` lines, without their trailing comments."""
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines()
            if line.startswith("python -m trainer_backend")]


@pytest.mark.slow
def test_cli_quick_start_runs_in_a_fresh_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    """In-process (cli.main, as tests/test_cli.py does) to save three interpreter starts."""
    from trainer_backend.cli import main

    commands = _commands(readme_block("## Train from a YAML file", "bash"))
    assert [c[3] for c in commands] == ["tiny-model", "validate", "doctor", "plan", "train", "cache"]
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    outputs = []
    for command in commands:
        code = main(command[3:])
        out, err = capsys.readouterr()
        assert code == 0, (command, err[-3000:])
        assert "Traceback" not in out + err
        outputs.append(out)
    assert "format:        messages" in outputs[1] and "OK: the data is valid" in outputs[1]
    assert "sample training string" in outputs[2]
    assert "peak memory:" in outputs[3] and "(counted" in outputs[3]
    assert "adapter saved to" in outputs[4]
    assert "prepared-data cache" in outputs[5] and "capitals.jsonl" in outputs[5]  # what validate prepared
    assert (tmp_path / "capitals-demo" / "adapter" / "adapter_config.json").is_file()
