"""A member is not the owner: no server secret, no owner's Hub identity, nobody else's file, through every endpoint
and every UI event (attacks.py: the Space, `attack`)."""
from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from .attacks import (MESSAGES, QUICK, RESULTS, _http_get, upload_as,
                     _spec_with, _stream, _unwrap, attack)
from spacehelpers import (MEMBER, OWNER, SECRETS, TOKEN_OF)

pytestmark = pytest.mark.slow  # starts the app as a Space (make test runs it)


# ---- issue 25: a member is not the owner — no server secret, no owner's Hub identity, nobody else's file --------
# The Space runs with the owner's HF_TOKEN, a distinctive OAuth client secret and an API key set (spacehelpers
# SECRETS). Every attack here is a member's (signed in, allowed to train), unless its name says otherwise.
@pytest.fixture(scope="module")
def hub_repos(space: dict, tiny_model_dir: Path) -> dict:
    """Private repos on the loopback Hub: the owner's base model and adapter, and the member's own base model."""
    from huggingface_hub import HfApi, constants

    owner = HfApi(endpoint=space["hub"].url, token=TOKEN_OF[OWNER])
    member = HfApi(endpoint=space["hub"].url, token=TOKEN_OF[MEMBER])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "HF_HUB_OFFLINE", False)  # this test process is offline (conftest); the loopback Hub
        for api, repo, folder in ((owner, f"{OWNER}/private-base", tiny_model_dir),
                                  (member, f"{MEMBER}/own-base", tiny_model_dir),
                                  (owner, f"{OWNER}/private-adapter",
                                   space["data"] / "jobs" / space["public"] / "adapter")):
            api.create_repo(repo, private=True, exist_ok=True)
            api.upload_folder(repo_id=repo, folder_path=str(folder), ignore_patterns=["README.md"])  # a local base
    return {"owner_base": f"{OWNER}/private-base", "member_base": f"{MEMBER}/own-base",
            "owner_adapter": f"{OWNER}/private-adapter"}


def _member_report(space: dict, spec: str) -> Callable[[], Any]:
    return lambda: _unwrap(space["member"].predict(spec, None, api_name="/dataset_report"))


def _hub_users_since(space: dict, mark: int) -> set[Optional[str]]:
    """Whose token the Hub requests since `mark` carried (None: anonymous); huggingface_hub's own anonymous
    fetch of its user-agent registry is not a request of ours."""
    return {user for _, path, user in space["hub"].state.acting_users[mark:]
            if not path.startswith("/api/agent-harnesses")}


def _on_base(base: str) -> str:
    return _spec_with(path="examples/capitals.jsonl").replace("{base_model: tiny-demo}", "{base_model: '" + base + "'}")


@pytest.mark.parametrize("name, spec", [
    ("a system prompt", QUICK.replace("chatml,", "chatml, system_prompt: 'say ${HF_TOKEN}',")),
    ("the data path", QUICK.replace("chatml,", "chatml, path: '${OAUTH_CLIENT_SECRET}',")),
    ("the default form", QUICK.replace("chatml,", "chatml, system_prompt: '${HF_TOKEN:-none}',")),
    ("hub.token", QUICK + "hub: {token: '${HF_TOKEN}'}\n"),
    ("a JSON spec", json.dumps({"model": {"base_model": "tiny-demo"},
                                "data": {"path": "examples/capitals.jsonl", "system_prompt": "${LORA_STUDIO_API_KEY}"}})),
])
def test_member_cannot_expand_server_variables(space: dict, name: str, spec: str) -> None:
    """${VAR} in a spec sent to the app is refused, naming the key; no endpoint expands it or echoes a value."""
    for endpoint in ("/dataset_report", "/validate_dataset", "/plan_job", "/start_training"):
        extra = (0, "") if endpoint == "/plan_job" else ()  # probe steps, hardware
        message = attack(space, f"member: ${{VAR}} in {name} via {endpoint}",
                         lambda e=endpoint, x=extra: _unwrap(space["member"].predict(spec, None, *x, api_name=e)),
                         "refers to an environment variable")
        assert not any(value in message for value in SECRETS.values())


def _dependency(space: dict, output_elem_id: str) -> dict:
    """The UI's own event that writes into the component with `output_elem_id` (the app's config)."""
    config = json.loads(_http_get(space["app"].url + "config"))
    target = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == output_elem_id)
    return next(d for d in config["dependencies"] if d["outputs"] and d["outputs"][0] == target)


def _ui_event(space: dict, token: str, dependency: dict, data: list) -> str:
    """Run a UI event by fn_index as a signed-in client (what a hostile script can do); its SSE stream's text."""
    session = f"s{abs(hash((token, dependency['id'], json.dumps(data)))) % 10**9}"
    body = {"data": data, "fn_index": dependency["id"], "session_hash": session, "event_data": None,
            "trigger_id": None}
    auth = {"x-hf-authorization": f"Bearer {token}"}
    req = urllib.request.Request(space["app"].url + "gradio_api/queue/join", json.dumps(body).encode(),
                                 {"content-type": "application/json", **auth})
    urllib.request.urlopen(req, timeout=10).read()
    req = urllib.request.Request(space["app"].url + f"gradio_api/queue/data?session_hash={session}", headers=auth)
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.read().decode(errors="replace")


def _refused_stream(stream: str) -> str:
    """A UI event's SSE stream: its error message is the refusal (raised); otherwise the stream is returned."""
    for line in stream.splitlines():
        if line.startswith("data: "):
            message = json.loads(line[6:])
            if message.get("msg") == "process_completed" and not message.get("success"):
                raise ValueError(str((message.get("output") or {}).get("error") or message)[:2000])
    return stream


def _filedata_call(space: dict, token: str, endpoint: str, data: list) -> Any:
    """A named endpoint called over raw HTTP with a FileData that names a file instead of uploading it."""
    url = space["app"].url + f"gradio_api/call/{endpoint}"
    req = urllib.request.Request(url, json.dumps({"data": data}).encode(),
                                 {"content-type": "application/json", "x-hf-authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        event = json.loads(resp.read())["event_id"]
    req = urllib.request.Request(f"{url}/{event}", headers={"x-hf-authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        out = resp.read().decode(errors="replace")
    if "event: error" in out:
        raise ValueError(out[-2000:])
    result = json.loads(out.split("data: ", 1)[1].splitlines()[0])[0]
    return _unwrap(result) if isinstance(result, dict) else result


def test_member_cannot_name_other_files_through_any_event(space: dict) -> None:
    """The preview event (the Hub-id box), the dataset file of /validate_dataset, Load config, and adapters all go
    through one confinement rule: the caller's own uploads, examples/, job folders for adapters, or a Hub id."""
    data, member = space["data"], space["member"]
    events = data / "jobs" / space["private"] / "events.jsonl"
    secret_rows = space["work"] / "owner-upload-secret.jsonl"
    secret_rows.write_text('{"instruction": "owner secret", "output": "owner secret answer"}\n')
    owners_gradio_upload = upload_as(space, TOKEN_OF[OWNER], secret_rows)  # in Gradio's folder, the owner's
    config_file = space["work"] / "owner-config.yaml"
    config_file.write_text(QUICK)
    owners_config = upload_as(space, TOKEN_OF[OWNER], config_file)
    link_dir = data / "uploads" / MEMBER / "0badc0de0badc0de"
    link_dir.mkdir(parents=True, exist_ok=True)
    (link_dir / "link.jsonl").symlink_to(space["owner_upload"])
    preview = _dependency(space, "detected-format")
    for name, path in {"owner's stored upload": str(space["owner_upload"]), "/etc/passwd": "/etc/passwd",
                       "a job's events": str(events), "examples/../ traversal": "examples/../../../../etc/passwd",
                       "owner's Gradio upload": owners_gradio_upload, "symlink to the owner's upload":
                       str(link_dir / "link.jsonl"), "the job database": str(data / "jobs.db")}.items():
        attack(space, f"member: dataset preview of {name}",
               lambda p=path: _ui_refusal(_ui_event(space, TOKEN_OF[MEMBER], preview, [None, None, p, "auto",
                                                                                         False])), "outside")
    as_file = {"path": owners_gradio_upload, "meta": {"_type": "gradio.FileData"}}
    attack(space, "member: the owner's Gradio upload as /validate_dataset's file",
           lambda: _filedata_call(space, TOKEN_OF[MEMBER], "validate_dataset", [QUICK, as_file]), "outside")
    config = json.loads(_http_get(space["app"].url + "config"))
    loader = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "load-config")
    load_dep = next(d for d in config["dependencies"] if d["targets"] and d["targets"][0] == [loader, "upload"])
    filedata = {"path": owners_config, "meta": {"_type": "gradio.FileData"}, "orig_name": "owner-config.yaml"}
    attack(space, "member: Load config with the owner's uploaded config",
           lambda: _ui_refusal(_ui_event(space, TOKEN_OF[MEMBER], load_dep, [filedata])), "outside")
    for name, ref in {"the owner's upload folder": str(space["owner_upload"].parent),
                      "the data dir": str(data), "/etc": "/etc"}.items():
        attack(space, f"member: chat with an 'adapter' in {name}",
               lambda r=ref: _stream(member.submit(r, "hi", [], "", 0.0, 0.9, 4, 1.0, api_name="/chat")), "outside")
    attack(space, "member: evaluate an 'adapter' in the owner's upload folder",
           lambda: member.predict(str(space["owner_upload"].parent), 5, 8, api_name="/evaluate"), "outside")
    # the owner's own upload is theirs to use
    assert _filedata_call(space, TOKEN_OF[OWNER], "validate_dataset", [QUICK, as_file])["ok"]


def test_member_reads_the_hub_as_themselves(space: dict, hub_repos: dict) -> None:
    """Base models and adapters are read with the caller's own token: the owner reads the owner's private repos,
    the member only their own, and no request a member causes carries the owner's identity."""
    owner, member = space["owner"], space["member"]
    mark = len(space["hub"].state.acting_users)
    assert _unwrap(owner.predict(_on_base(hub_repos["owner_base"]), None, api_name="/dataset_report"))["ok"]
    answer = owner.predict(hub_repos["owner_adapter"], "Hello", "", 0.0, 4, api_name="/compare")
    assert set(answer) == {"base", "fine_tuned"}
    assert _hub_users_since(space, mark) <= {OWNER, None}  # (transformers asks for some optional files anonymously)
    for name, call in {
        "report on the owner's private base model": _member_report(space, _on_base(hub_repos["owner_base"])),
        "chat with the owner's private Hub adapter": lambda: _stream(member.submit(
            hub_repos["owner_adapter"], "hi", [], "", 0.0, 0.9, 4, 1.0, api_name="/chat")),
        "compare with the owner's private Hub adapter": lambda: member.predict(
            hub_repos["owner_adapter"], "hi", "", 0.0, 4, api_name="/compare"),
    }.items():
        mark = len(space["hub"].state.acting_users)
        attack(space, f"member: {name}", call, "private", hub_reads=True)  # the Hub's answer to the member's token
        assert _hub_users_since(space, mark) - {MEMBER} <= {None}, "a member's call used the owner's identity"
        assert MEMBER in _hub_users_since(space, mark)
    mark = len(space["hub"].state.acting_users)
    assert _unwrap(member.predict(_on_base(hub_repos["member_base"]), None, api_name="/dataset_report"))["ok"]
    assert MEMBER in _hub_users_since(space, mark) and OWNER not in _hub_users_since(space, mark)
    assert _hub_users_since(space, mark) <= {MEMBER, None}
    attack(space, "owner: report on the member's private base model (the owner's token cannot see it)",
           lambda: _unwrap(owner.predict(_on_base(hub_repos["member_base"]), None, api_name="/dataset_report")),
           "private", hub_reads=True)


def _wait_for(client: Any, job_id: str, timeout: float = 240) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.predict(job_id, False, api_name="/job_status")
        if status["status"] in ("succeeded", "failed", "stopped", "trained_not_pushed", "interrupted"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish: {status}")


def test_member_pushes_to_their_own_namespace_with_their_own_token(space: dict) -> None:
    """A member's job pushes with the member's token (never kept in a job file, forgotten at the end); a push into
    the owner's namespace is the Hub's 403 for the member, and nothing is created there."""
    import time

    from trainer_backend.jobs import tokens

    member, hub = space["member"], space["hub"]
    spec = _spec_with(path="examples/capitals.jsonl") + f"hub: {{push_to_hub: true, repo_id: {MEMBER}/member-adapter}}\n"
    mark = len(hub.state.acting_users)
    started = member.predict(spec, None, api_name="/start_training")
    assert started["job_id"] and started["status"] == "queued", started
    job = _wait_for(member, started["job_id"])
    assert job["status"] == "succeeded", job
    assert job["hub_identity"] == f"{MEMBER} (own token)" and job["owner"] == MEMBER
    repo = hub.state.repos[f"{MEMBER}/member-adapter"]
    assert repo.owner == MEMBER and repo.private
    writes = [(m, p, u) for m, p, u in hub.state.acting_users[mark:] if m == "POST"]
    assert writes and {u for _, _, u in writes} == {MEMBER}, writes
    for _ in range(50):  # the supervisor forgets the token right after it records the end
        if started["job_id"] not in tokens.held(space["data"]):
            break
        time.sleep(0.1)
    assert started["job_id"] not in tokens.held(space["data"]), "the job ended: its token must be forgotten"
    job_dir = space["data"] / "jobs" / started["job_id"]
    for path in job_dir.rglob("*"):
        if path.is_file():
            assert TOKEN_OF[MEMBER].encode() not in path.read_bytes(), f"the member's token is in {path}"
    # into the owner's namespace: the Hub refuses the member's token; nothing is created there
    mark = len(hub.state.acting_users)
    out = member.predict(started["job_id"], f"{OWNER}/stolen", False, api_name="/push_job")
    assert out["status"] == "trained_not_pushed" and "403" in out["error"], out
    assert f"{OWNER}/stolen" not in hub.state.repos
    assert _hub_users_since(space, mark) <= {MEMBER}
    RESULTS["member: push into the owner's namespace"] = True
    out = member.predict(started["job_id"], f"{MEMBER}/member-adapter-2", False, api_name="/push_job")
    assert out["status"] == "succeeded" and hub.state.repos[f"{MEMBER}/member-adapter-2"].owner == MEMBER


@pytest.mark.parametrize("name, text, expect", [
    ("4 KB of nested flow brackets", "a: " + "[" * 4000 + "]" * 4000, "levels deep"),
    ("nested JSON objects", '{"a": ' * 3000 + "1" + "}" * 3000, "levels deep"),
    ("indentation 600 levels deep", "".join(" " * i + f"k{i}:\n" for i in range(600)) + " " * 600 + "v\n",
     "indented"),
    ("7 levels of 9 aliases (4.8 million values)", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(6)),
     "aliases are expanded"),
    ("256 KiB of tiny nodes", "a:\n" + "  - [1, 2, {b: c}]\n" * 13_000, "YAML nodes"),
])
def test_untrusted_yaml_is_bounded_before_parsing(space: dict, name: str, text: str, expect: str) -> None:
    """Refused with a message, never an internal error, and quickly (the old parser held a core for 18 s on 4 KB
    and then failed with a RecursionError)."""
    import time

    t0 = time.monotonic()
    attack(space, f"member: spec with {name}", _member_report(space, text), expect)
    assert time.monotonic() - t0 < 5, f"{name}: {time.monotonic() - t0:.1f} s"


def test_no_server_secret_reaches_a_client(space: dict) -> None:
    """Everything the app produced for clients — every refusal recorded above, a member's successful reports,
    plans, job views and logs, every file of the data dir and Gradio's folder, the app's own log — holds none of
    the server's secret values (HF_TOKEN, OAUTH_CLIENT_SECRET, an API key) nor a member's token."""
    member = space["member"]
    outputs = list(MESSAGES)
    outputs.append(member.predict(_spec_with(path="examples/capitals.jsonl"), None, api_name="/dataset_report"))
    outputs.append(member.predict(_spec_with(path="examples/capitals.jsonl"), None, 0, "", api_name="/plan_job"))
    outputs.append(member.predict(100, api_name="/list_jobs"))
    for job in member.predict(100, api_name="/list_jobs"):
        outputs.append(member.predict(job["id"], True, api_name="/job_status"))
        outputs.append(member.predict(job["id"], 500, api_name="/job_logs"))
    text = json.dumps(outputs, default=str)
    for name, value in {**SECRETS, "the member's token": TOKEN_OF[MEMBER]}.items():
        assert value not in text, f"{name} reached a client"
    from spacehelpers import gradio_temp_dir

    roots = [space["data"], gradio_temp_dir(space["data"]),
             space["app"].data_dir.parent / f"app-{space['app'].port}.log"]
    for root in roots:
        for path in ([root] if root.is_file() else root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                blob = path.read_bytes()
                for name, value in {**SECRETS, "the member's token": TOKEN_OF[MEMBER]}.items():
                    assert value.encode() not in blob, f"{name} is in {path}"


# Every event the app serves that names a file, a folder or a Hub id, by the inputs it takes (the app's config).
# Each is attacked below as a member, by fn_index or by name, with other users' files, files outside the data
# dir and traversal; show_yaml / on_save only write the names into YAML text and open nothing.
PATH_INPUT_TYPES = ("file", "uploadbutton")
SWEEP = "sweep: {parameters: {lora.r: {choices: [4, 8]}}, trials: 2, pruner: none}\n"
PATH_INPUT_LABELS = ("hub dataset id", "base model", "adapter", "spec (yaml or json)", "spec.yaml")
# Events that take the form (an upload, a path typed in a box) but open no file: the form's refresh (YAML preview,
# field checks), a preset (a base model folder is confined like Check data's before its size is read), its undo,
# Save config (writes the form as YAML), the Chat tab's adapter list (reads the adapter box only to keep a pick).
OPENS_NOTHING = {"refresh", "apply_preset", "on_undo", "on_save", "adapters"}


def _takes_a_path(config: dict, dependency: dict) -> bool:
    components = {c["id"]: c for c in config["components"]}
    inputs = [components[i] for i in dependency["inputs"]]
    return any(c["type"] in PATH_INPUT_TYPES or (c["type"] in ("textbox", "dropdown", "code") and any(
        w in str(c.get("props", {}).get("label", "")).lower() for w in PATH_INPUT_LABELS)) for c in inputs) \
        or dependency.get("api_name") in ("chat", "compare", "evaluate")


def _event_data(config: dict, dependency: dict, **by_label: Any) -> list:
    """The event's inputs at their defaults, with the ones whose label starts with a key of `by_label` replaced."""
    components = {c["id"]: c for c in config["components"]}
    data = []
    for i in dependency["inputs"]:
        props = components[i].get("props", {})
        label = str(props.get("label", "")).lower()
        value = next((v for k, v in by_label.items() if label.startswith(k.replace("_", " "))), props.get("value"))
        data.append(value)
    return data


def _ui_refusal(stream: str) -> str:
    """A UI event either fails (its error) or shows its refusal in the page ('... outside the app's upload ...')."""
    _refused_stream(stream)
    if "outside the app" in stream or "not found or is private" in stream:
        raise ValueError(stream[-1500:])
    return stream


def test_every_event_that_takes_a_path_refuses_other_peoples_files(space: dict) -> None:
    data = space["data"]
    config = json.loads(_http_get(space["app"].url + "config"))
    by_name = {d.get("api_name"): d for d in config["dependencies"]}
    path_events = {d["api_name"].rstrip("_0123456789") for d in config["dependencies"] if _takes_a_path(config, d)}
    secret_rows = space["work"] / "owner-upload-2.jsonl"
    secret_rows.write_text('{"instruction": "owner secret", "output": "owner secret answer"}\n')
    other = {"path": upload_as(space, TOKEN_OF[OWNER], secret_rows), "meta": {"_type": "gradio.FileData"}}
    outside = {"another user's upload": str(space["owner_upload"]), "/etc/passwd": "/etc/passwd",
               "traversal": "examples/../../../../../etc/passwd", "a job's events":
               str(data / "jobs" / space["private"] / "events.jsonl")}
    member_token = TOKEN_OF[MEMBER]
    attacked: set[str] = set()

    def ui(name: str, label: str, **inputs: Any) -> None:
        dep = by_name[name]
        attack(space, f"member: UI event {name}: {label}",
               lambda: _ui_refusal(_ui_event(space, member_token, dep, _event_data(config, dep, **inputs))),
               "outside the app")
        attacked.add(name)

    for label, path in outside.items():
        ui("on_dataset", label, **{"...or a hub dataset id": path})
        ui("on_model", label, base_model=path)
        spec = _spec_with(path=path)
        for name in ("on_report", "on_start", "on_plan", "on_start_sweep"):
            ui(name, f"spec naming {label}", **{"spec.yaml": spec})
        if label != "a job's events":  # job folders are the members' shared adapters (the Jobs tab lists them)
            ui("respond", f"adapter {label}", adapter=path, message="hi")
            ui("run_eval", f"adapter {label}", adapter=path)
    ui("run_eval", "another user's upload as the evaluation data", adapter=space["public"], data_file=other)
    for name in ("on_report", "on_start", "on_plan", "on_start_sweep"):
        ui(name, "another user's Gradio upload as the dataset", **{"spec.yaml": QUICK, "...or upload": other})
    owner_yaml = space["work"] / "owner-config-2.yaml"
    owner_yaml.write_text(QUICK)
    ui("on_load", "another user's uploaded config", load_config={
        "path": upload_as(space, TOKEN_OF[OWNER], owner_yaml), "meta": {"_type": "gradio.FileData"}})
    for endpoint in ("plan_job", "validate_dataset", "dataset_report", "start_training", "start_sweep"):
        extra = [0, ""] if endpoint == "plan_job" else []
        spec = QUICK + SWEEP if endpoint == "start_sweep" else QUICK
        attack(space, f"member: {endpoint} with another user's Gradio upload",
               lambda e=endpoint, x=extra, s=spec: _filedata_call(space, member_token, e, [s, other, *x]), "outside")
        attacked.add(endpoint)
    for endpoint in ("chat", "compare", "evaluate"):
        attacked.add(endpoint)  # test_member_cannot_name_other_files_through_any_event: adapters outside jobs
    missing = path_events - attacked - OPENS_NOTHING
    assert not missing, f"events that take a path but are not attacked here: {sorted(missing)}"
    RESULTS["every event that takes a path is attacked"] = True
