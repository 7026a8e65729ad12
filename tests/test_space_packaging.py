"""Space packaging: README.md front matter is a valid Gradio Space config, and the Dockerfile is sane.

Static checks only (no build, no network): the Space config keys Hugging Face reads, versions that agree with
requirements.txt and the installed gradio, OAuth scopes that allow pushing adapters, and a Dockerfile that runs
the app as a non-root user on 0.0.0.0:7860 with the pinned requirements (torch first, from its pin).
"""
from __future__ import annotations

import json
import re
import shlex
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
THUMBNAIL_COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def _front_matter() -> dict[str, Any]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert m, "README.md must start with a YAML front matter block (---\\n...\\n---) for the Space config"
    meta = yaml.safe_load(m.group(1))
    assert isinstance(meta, dict), "the front matter must be a YAML mapping"
    return meta


def _requirement_pin(name: str) -> str:
    for line in (REPO / "requirements.txt").read_text().splitlines():
        m = re.fullmatch(rf"{re.escape(name)}(\[[\w,-]*\])?==(\S+)", line.strip(), re.IGNORECASE)  # extras ok
        if m:
            return m.group(2)
    raise AssertionError(f"requirements.txt has no exact pin for {name}")


def _readme_section(title_words: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"^(#+) [^\n]*{title_words}[^\n]*\n(.*?)(?=^\1 |\Z)", text, re.MULTILINE | re.DOTALL | re.I)
    assert m, f"README.md needs a section titled '{title_words}'"
    return m.group(2)


# ---- README front matter ---------------------------------------------------------------------------------

def test_front_matter_is_a_gradio_space_config() -> None:
    meta = _front_matter()
    for key in ("title", "emoji", "sdk", "sdk_version", "app_file", "license", "short_description",
                "suggested_hardware", "hf_oauth", "hf_oauth_scopes"):
        assert key in meta, f"front matter lacks `{key}`"
    assert isinstance(meta["title"], str) and meta["title"].strip()
    assert isinstance(meta["emoji"], str) and meta["emoji"].strip() and not re.search(r"[A-Za-z0-9]", meta["emoji"])
    assert meta["sdk"] == "gradio"
    assert meta["app_file"] == "app.py" and (REPO / "app.py").is_file()
    assert isinstance(meta["license"], str) and meta["license"].strip()
    desc = meta["short_description"]
    assert isinstance(desc, str) and 0 < len(desc) <= 60, f"short_description must be 1-60 chars, got {len(desc)}"
    for key in ("colorFrom", "colorTo"):
        assert key not in meta or meta[key] in THUMBNAIL_COLOURS, f"{key} must be one of {sorted(THUMBNAIL_COLOURS)}"
    if "python_version" in meta:  # unquoted 3.10 would be the float 3.1
        assert isinstance(meta["python_version"], str) and re.fullmatch(r"3\.\d+(\.\d+)?", meta["python_version"])


def test_sdk_version_is_the_installed_and_pinned_gradio() -> None:
    sdk_version = _front_matter()["sdk_version"]
    assert isinstance(sdk_version, str), "quote sdk_version so YAML keeps it a string"
    assert sdk_version == version("gradio") == _requirement_pin("gradio"), \
        "the Space's gradio (sdk_version), requirements.txt and the tested install must be the same version"


def test_oauth_can_create_and_push_repos() -> None:
    meta = _front_matter()
    assert meta["hf_oauth"] is True
    scopes = meta["hf_oauth_scopes"]
    assert isinstance(scopes, list) and all(isinstance(s, str) for s in scopes)
    assert {"write-repos", "manage-repos"} <= set(scopes), "pushing adapters needs write-repos and manage-repos"


def test_suggested_hardware_is_a_dedicated_gpu() -> None:
    from huggingface_hub import SpaceHardware

    hardware = _front_matter()["suggested_hardware"]
    assert hardware in {h.value for h in SpaceHardware}, f"unknown hardware flavour {hardware!r}"
    # Training runs in a subprocess for minutes: CPU is too slow and ZeroGPU lends a GPU only inside @spaces.GPU.
    assert not hardware.startswith(("cpu-", "zero-")), hardware


def test_huggingface_hub_reads_the_space_card() -> None:
    from huggingface_hub import SpaceCard

    card = SpaceCard((REPO / "README.md").read_text(encoding="utf-8"))
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.text.strip(), "the README body follows the front matter"


def test_readme_explains_duplicating_the_space() -> None:
    section = _readme_section("Duplicate this Space")
    assert _front_matter()["suggested_hardware"] in section, "name the hardware to pick"
    assert "HF_TOKEN" in section and re.search(r"optional", section, re.I), "HF_TOKEN is optional with OAuth"
    assert "/data" in section, "say where the job store persists"


# ---- Dockerfile ------------------------------------------------------------------------------------------

def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    assert not current, "Dockerfile ends inside a continued line"
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in instructions:
        if word != "ENV":
            continue
        parts = shlex.split(args)
        if parts and "=" not in parts[0]:  # legacy `ENV KEY value`
            env[parts[0]] = " ".join(parts[1:])
        else:
            env.update(p.split("=", 1) for p in parts)
    return env


def _command(args: str) -> list[str]:
    """A CMD/ENTRYPOINT in exec (JSON) or shell form, as a list of words."""
    try:
        value = json.loads(args)
        return [str(v) for v in value] if isinstance(value, list) else shlex.split(args)
    except json.JSONDecodeError:
        return shlex.split(args)


def test_dockerfile_runs_the_app_as_non_root_on_port_7860() -> None:
    ins = _instructions()
    words = [w for w, _ in ins]
    assert words and words[0] in ("FROM", "ARG") and "FROM" in words, "the Dockerfile starts with FROM"
    base = next(a for w, a in ins if w == "FROM")
    m = re.search(r"python:(\d+)\.(\d+)", base)
    assert m and (int(m[1]), int(m[2])) >= (3, 10), f"base image {base!r}: Python 3.10+ (pyproject requires it)"

    cmd_at = max(i for i, w in enumerate(words) if w == "CMD")
    users = [a.split(":")[0] for w, a in ins[:cmd_at] if w == "USER"]
    assert users and users[-1] not in ("root", "0"), "the app must run as a non-root USER"
    assert any(w == "EXPOSE" and "7860" in a.split() for w, a in ins), "EXPOSE 7860 (the Space/Gradio port)"

    cmd = _command(ins[cmd_at][1])
    entry = [_command(a) for w, a in ins if w == "ENTRYPOINT"]
    full = (entry[-1] if entry else []) + cmd
    assert any(part.endswith("app.py") for part in full), f"CMD must run app.py, got {full}"
    env = _env(ins)
    assert "0.0.0.0" in " ".join(full) or env.get("GRADIO_SERVER_NAME") == "0.0.0.0", \
        "the app must listen on 0.0.0.0 (in CMD, or GRADIO_SERVER_NAME=0.0.0.0)"


def test_dockerfile_keeps_the_job_store_on_a_data_volume() -> None:
    ins = _instructions()
    volumes = " ".join(a for w, a in ins if w == "VOLUME")
    data_dir = _env(ins).get("LORA_STUDIO_DATA_DIR", "")
    assert "/data" in volumes or data_dir.startswith("/data"), \
        "declare VOLUME /data (or set LORA_STUDIO_DATA_DIR under /data) so jobs survive a container restart"


def _pip_installs(ins: list[tuple[str, str]]) -> list[list[str]]:
    """The argument lists of every `pip install` in RUN instructions, in order."""
    out = []
    for word, args in ins:
        if word != "RUN":
            continue
        for segment in re.split(r"&&|;|\|\|", args):
            words = shlex.split(segment, posix=True)
            for i in range(len(words) - 1):
                if re.fullmatch(r"(\S*/)?pip3?", words[i]) and words[i + 1] == "install":
                    out.append(words[i + 2:])
                    break
    return out


def test_dockerfile_installs_only_the_pinned_requirements_torch_first() -> None:
    torch_pin = f"torch=={_requirement_pin('torch')}"
    installs = [args for args in _pip_installs(_instructions())
                if [a for a in args if not a.startswith("-")] not in (["pip"], ["pip", "setuptools", "wheel"])]
    assert installs, "no pip install in the Dockerfile"

    def is_torch_pin(arg: str) -> bool:  # the literal pin, or read from requirements.txt at build time
        return arg == torch_pin or ("grep" in arg and "torch==" in arg and "requirements.txt" in arg)

    first = [a for a in installs[0] if not a.startswith("-")]
    assert len(first) == 1 and is_torch_pin(first[0]), \
        f"the first pip install must be torch alone, from its pin ({torch_pin}), got {installs[0]}"
    for args in installs[1:]:
        i = 0
        while i < len(args):
            arg = args[i]
            if arg in ("-r", "--requirement"):
                assert args[i + 1] == "requirements.txt", f"only requirements.txt may be installed, got {args}"
                i += 2
                continue
            if arg in (".", "-e", "--editable") or arg.startswith("./"):
                assert "--no-deps" in args, f"the project itself is installed with --no-deps, got {args}"
            elif not arg.startswith("-"):
                assert is_torch_pin(arg), f"pip installs {arg!r}, which is not from requirements.txt"
            i += 1
