"""Hub push/pull against a loopback Hub (tests/hub_server.py): real HfApi, hf_hub_download and peft, no internet.

One short real training run per module produces the job dir; every push goes to 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from hub_server import HubServer  # tests/ is on sys.path (pytest's rootdir-relative import of test modules)
from trainer_backend.hub import RetryPolicy  # light: the package imports torch/transformers only when used

ALICE = "hf_LeakCanary" + secrets.token_hex(12)  # distinctive: the leak test greps for it everywhere
BOB = "hf_bob" + secrets.token_hex(12)
CAROL = "hf_carol" + secrets.token_hex(12)
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


LIBRARY_SLEEPS: list[float] = []  # huggingface_hub's own backoff (preupload/commit), recorded instead of slept


@pytest.fixture(scope="module")
def loopback_hub() -> Iterator[HubServer]:
    """The loopback Hub, with huggingface_hub pointed at it (and out of the offline mode conftest sets).

    Any request to another host fails the test. huggingface_hub's internal backoff (it retries preupload and
    commit 5 times, waiting 1-8 s) is recorded in LIBRARY_SLEEPS instead of slept, to keep the module fast."""
    import types

    import huggingface_hub
    import huggingface_hub.constants as constants
    from huggingface_hub.utils import _http
    from huggingface_hub.utils._http import default_client_factory

    server = HubServer({ALICE: "alice", BOB: "bob", CAROL: "carol"}).start()

    def loopback_only(request: Any) -> None:
        if request.url.host != "127.0.0.1":
            raise RuntimeError(f"a test tried to reach {request.url.host}: only the loopback Hub is allowed")

    def client_factory() -> Any:
        client = default_client_factory()
        client.event_hooks["request"].append(loopback_only)
        return client

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        # Calls that take no endpoint use these (hf_hub_download builds its URL from the template, read at import).
        mp.setattr(constants, "ENDPOINT", server.url)
        mp.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
        mp.setattr(_http, "time", types.SimpleNamespace(sleep=LIBRARY_SLEEPS.append))
        mp.delenv("HF_TOKEN", raising=False)
        huggingface_hub.set_client_factory(client_factory)
        try:
            yield server
        finally:
            huggingface_hub.set_client_factory(default_client_factory)
    server.stop()


@pytest.fixture
def hub(loopback_hub: HubServer) -> Iterator[HubServer]:
    """The module's loopback Hub, running and with no faults pending, for one test."""
    loopback_hub.start()
    LIBRARY_SLEEPS.clear()
    yield loopback_hub
    loopback_hub.clear_faults()
    loopback_hub.start()


def _spec(tiny_model_dir: Path, data_file: Path, out: Path, **hub: Any):
    from trainer_backend.spec import parse_spec

    raw = {"project_name": "tiny-chat", "output_dir": str(out), "model": {"base_model": str(tiny_model_dir)},
           "data": {"path": str(data_file), "max_rows": 20, "chat_template": "chatml", "valid_split": "auto",
                    "valid_fraction": 0.2},
           "lengths": {"block_size": 256, "model_max_length": 512}, "lora": {"r": 4, "alpha": 8},
           "training": {"max_steps": 2, "batch_size": 2, "gradient_accumulation": 1, "logging_steps": 1,
                        "eval_strategy": "steps", "eval_steps": 2, "save_strategy": "no"},
           "hub": hub}
    return parse_spec(raw)[0]


TRAINING_OUTPUT: dict[str, str] = {}  # what the module's training run printed and logged (for the leak test)


@pytest.fixture(scope="module")
def job(loopback_hub: HubServer, tiny_model_dir: Path, shared_data: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real 2-step SFT run, its spec holding the canary token via `hub.token: ${HF_TOKEN}`; the run pushes
    to the loopback Hub itself when it finishes (hub.push_to_hub)."""
    import contextlib
    import io

    from trainer_backend.training.run import run_training

    records = io.StringIO()
    handler = logging.StreamHandler(records)
    root = logging.getLogger()
    old_level = root.level
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_TOKEN", ALICE)
        spec = _spec(tiny_model_dir, shared_data / "chat" / "oasst_en100_messages.jsonl",
                     tmp_path_factory.mktemp("hub-job") / "job", push_to_hub=True, token="${HF_TOKEN}")
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                assert run_training(spec).status == "succeeded"
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
    pushed = [json.loads(l) for l in (spec.job_dir / "events.jsonl").read_text().splitlines()
              if '"pushed"' in l]
    assert pushed and pushed[-1]["repo_id"] == "alice/tiny-chat", "the finished run pushed its adapter"
    TRAINING_OUTPUT.update(stdout=out.getvalue(), stderr=err.getvalue(), logs=records.getvalue())
    yield spec


@pytest.fixture(scope="module")
def job_dir(job: Any) -> Path:
    return job.job_dir


def test_job_layout_names_match_training() -> None:
    from trainer_backend.hub import push
    from trainer_backend.training import common, run

    assert (push.ADAPTER_DIR, push.META_FILE, push.REPORT_FILE, push.SPEC_FILE) == \
        (common.ADAPTER_DIR, run.META_FILE, run.REPORT_FILE, run.SPEC_FILE)


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- push round trip ----------------------------------------------------------------------------------

def test_push_round_trip_loads_with_peft_from_the_hub(hub: HubServer, job_dir: Path, tiny_model_dir: Path,
                                                      tmp_path: Path) -> None:
    from trainer_backend.hub import push_adapter

    t0 = time.perf_counter()
    result = push_adapter(job_dir, token=ALICE, endpoint=hub.url, retry=FAST)
    elapsed = time.perf_counter() - t0
    assert result.repo_id == "alice/tiny-chat" and result.url == f"{hub.url}/alice/tiny-chat"
    assert hub.repo("alice/tiny-chat").private and hub.repo("alice/tiny-chat").commits[-1].oid == result.commit
    assert elapsed < 5, f"a push over loopback took {elapsed:.2f}s"

    files = hub.files(result.repo_id)
    adapter = job_dir / "adapter"
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja", "lora_studio.json"):
        assert files[name] == (adapter / name).read_bytes(), name
    assert {"README.md", "training/spec.yaml", "training/metrics.json", "training/data_report.json",
            "training/loss.png"} <= set(files)
    assert "training_args.bin" not in files, "pickles stay off the Hub"
    assert files["training/loss.png"].startswith(b"\x89PNG")
    spec = yaml.safe_load(files["training/spec.yaml"])
    assert "output_dir" not in spec and "token" not in spec["hub"] and spec["project_name"] == "tiny-chat"
    metrics = json.loads(files["training/metrics.json"])
    assert metrics["final"]["train_loss"] > 0 and [p["step"] for p in metrics["train_loss"]] == [1, 2]
    assert "sample" not in json.loads(files["training/data_report.json"]), "no training rows on the Hub"

    # A fresh process that knows the Hub only through HF_ENDPOINT/HF_TOKEN: peft loads the adapter by repo id,
    # gets the same logits as from the job dir, and the model card's snippet runs as written.
    script = textwrap.dedent(f"""
        import json, re, torch
        from huggingface_hub import hf_hub_download
        from peft import PeftModel
        from transformers import AutoModelForCausalLM
        base = lambda: AutoModelForCausalLM.from_pretrained({str(tiny_model_dir)!r}).eval()
        hub_model = PeftModel.from_pretrained(base(), {result.repo_id!r}).eval()
        local_model = PeftModel.from_pretrained(base(), {str(adapter)!r}).eval()
        ids = torch.tensor([[5, 17, 42, 99, 7, 300]])
        with torch.no_grad():
            diff = (hub_model(input_ids=ids).logits - local_model(input_ids=ids).logits).abs().max().item()
        card = open(hf_hub_download({result.repo_id!r}, "README.md")).read()
        snippet = re.search(r"```python\\n(.*?)```", card, re.S).group(1)
        scope = {{}}
        exec(snippet, scope)
        new_tokens = int(scope["output"].shape[1] - scope["inputs"]["input_ids"].shape[1])
        print(json.dumps({{"diff": diff, "new_tokens": new_tokens,
                          "template": scope["tokenizer"].chat_template is not None}}))
    """)
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": ALICE, "HF_HUB_OFFLINE": "0",
           "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["diff"] < 1e-6 and out["new_tokens"] > 0 and out["template"]
    assert ALICE not in proc.stdout + proc.stderr


def test_repo_is_private_to_its_owner(hub: HubServer, job_dir: Path, tmp_path: Path) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import RepositoryNotFoundError

    from trainer_backend.hub import push_adapter

    repo_id = push_adapter(job_dir, repo_id="private-check", token=ALICE, endpoint=hub.url, retry=FAST).repo_id
    assert repo_id == "alice/private-check"
    api = HfApi(endpoint=hub.url)
    assert api.repo_exists(repo_id, token=ALICE) and not api.repo_exists(repo_id, token=BOB)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_id, "adapter_config.json", token=BOB, endpoint=hub.url, cache_dir=tmp_path)
    assert ("GET", f"/{repo_id}/resolve/main/adapter_config.json", 404) in hub.requests or \
        ("HEAD", f"/{repo_id}/resolve/main/adapter_config.json", 404) in hub.requests


# ---- model card --------------------------------------------------------------------------------------

def test_pushed_model_card_parses_with_metadata(hub: HubServer, job_dir: Path) -> None:
    from huggingface_hub import ModelCard

    from trainer_backend.hub import push_adapter

    repo_id = push_adapter(job_dir, token=ALICE, endpoint=hub.url, retry=FAST).repo_id
    card = ModelCard(hub.files(repo_id)["README.md"].decode())
    meta = card.data.to_dict()
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-generation"
    assert {"lora-studio", "sft", "peft", "lora"} <= set(meta["tags"])
    assert "base_model" not in meta and "datasets" not in meta, "a local base/data path is not Hub metadata"
    text = card.text
    assert "`oasst_en100_messages.jsonl` (local)" in text and str(job_dir) not in text, "no local paths"
    assert "| chat template | `chatml` |" in text and r"`<\|im_end\|>`" in text
    assert re.search(r"\| train_loss \| \d", text) and re.search(r"\| eval_loss \| \d", text)
    assert "| lora.r | 4 |" in text and "| learning_rate | 0.0002 |" in text
    assert "![Training and evaluation loss](training/loss.png)" in text
    assert 'convert_tokens_to_ids("<|im_end|>")' in text, "the snippet stops at the template's end of turn"


def test_model_card_metadata_for_hub_base_and_dataset() -> None:
    from huggingface_hub import ModelCard

    from trainer_backend.model_card import build_model_card

    meta = {"base_model": "Qwen/Qwen2.5-0.5B-Instruct", "trainer": "dpo", "chat_template": "tokenizer",
            "end_of_turn": "<|im_end|>", "lora": True, "metrics": {"train_loss": 0.5, "eval_loss": 0.61,
                                                                    "eval_rewards/accuracies": 0.8}}
    spec = {"project_name": "qwen-dpo", "model": {"base_model": "Qwen/Qwen2.5-0.5B-Instruct"},
            "data": {"path": "Intel/orca_dpo_pairs", "train_split": "train"},
            "training": {"trainer": "dpo", "quantization": "int4", "beta": 0.1, "dpo_loss_type": "sigmoid"},
            "lora": {"enabled": True, "r": 16}}
    card = ModelCard(build_model_card("alice/qwen-dpo", meta, spec, None, license="apache-2.0",
                                      plot_note="loss plot skipped"))
    data = card.data.to_dict()
    assert data["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct" and data["datasets"] == ["Intel/orca_dpo_pairs"]
    assert data["license"] == "apache-2.0" and data["library_name"] == "peft"
    assert {"lora-studio", "dpo", "qlora"} <= set(data["tags"])
    assert "[Intel/orca_dpo_pairs](https://huggingface.co/datasets/Intel/orca_dpo_pairs)" in card.text
    assert "| eval_rewards/accuracies | 0.8 |" in card.text and "| beta | 0.1 |" in card.text
    assert "_loss plot skipped_" in card.text and "local folder" not in card.text
    reward = ModelCard(build_model_card("alice/rm", {**meta, "trainer": "reward"}, spec, None))
    assert reward.data.pipeline_tag == "text-classification" and "AutoPeftModelForSequenceClassification" in reward.text


@pytest.mark.parametrize("variant", [
    {}, {"trainer": "generic", "chat_template": "none"}, {"prompt_template": {"preset": "alpaca"}},
    {"trainer": "reward"}, {"lora": False}, {"end_of_turn": "\n### End"}, {"merged_from": "alice/x"}])
def test_model_card_snippet_compiles_for_every_kind_of_job(variant: dict[str, Any]) -> None:
    from huggingface_hub import ModelCard

    from trainer_backend.model_card import build_model_card

    merged_from = variant.pop("merged_from", None)
    meta = {"base_model": "Qwen/Qwen2.5-0.5B-Instruct", "trainer": "sft", "chat_template": "chatml",
            "end_of_turn": "<|im_end|>", "lora": True, "metrics": {}, **variant}
    eot_token = meta["end_of_turn"] == "<|im_end|>"
    repo_id = "alice/x-merged" if merged_from else "alice/x"
    card = ModelCard(build_model_card(repo_id, meta, {"data": {"path": "d.jsonl"}}, None,
                                      end_of_turn_is_token=eot_token, merged_from=merged_from))
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S).group(1)
    compile(snippet, "model card", "exec")
    assert ("AutoPeft" in snippet) == (meta["lora"] and not merged_from)
    assert ("stop_strings" in snippet) == (not eot_token)


# ---- naming ------------------------------------------------------------------------------------------

def test_repo_names_follow_hub_rules() -> None:
    from huggingface_hub.utils import validate_repo_id

    from trainer_backend.hub import HubError, check_repo_id, hub_repo_name

    for raw in ("my run..v2--final.git", "-lead-", "a" * 200, "ünïcode name", "..", "x.git"):
        name = hub_repo_name(raw)
        validate_repo_id(f"user/{name}")
        validate_repo_id(f"user/{name}-merged-99")
        assert not name.endswith((".git", "-", ".")) and "--" not in name and ".." not in name
    assert hub_repo_name("qwen-chat-qlora") == "qwen-chat-qlora"
    for bad in ("alice/a--b", "alice/.x", "no-namespace/", "a/b/c", "alice/x.git"):
        with pytest.raises(HubError, match="invalid repo id"):
            check_repo_id(bad)


def test_default_name_skips_foreign_repos_and_reuses_ours(hub: HubServer, job_dir: Path, tmp_path: Path) -> None:
    from huggingface_hub import HfApi

    from trainer_backend.hub import push_adapter

    api = HfApi(endpoint=hub.url, token=CAROL)
    api.create_repo("carol/tiny-chat", private=True)
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\nsomething else\n")
    api.upload_folder(repo_id="carol/tiny-chat", folder_path=tmp_path)
    first = push_adapter(job_dir, token=CAROL, endpoint=hub.url, retry=FAST)
    assert first.repo_id == "carol/tiny-chat-2", "a repo LoRA Studio did not make is never overwritten"
    again = push_adapter(job_dir, token=CAROL, endpoint=hub.url, retry=FAST)
    assert again.repo_id == "carol/tiny-chat-2" and again.commit != first.commit, "our own repo gets a new commit"
    assert hub.files("carol/tiny-chat")["README.md"].endswith(b"something else\n")


# ---- pull ---------------------------------------------------------------------------------------------

def test_pull_adapter_and_resolve_base_model(hub: HubServer, job_dir: Path, tiny_model_dir: Path,
                                             tmp_path: Path) -> None:
    from trainer_backend.hub import pull_adapter, push_adapter, resolve_base_model

    repo_id = push_adapter(job_dir, repo_id="alice/pull-me", token=ALICE, endpoint=hub.url, retry=FAST).repo_id
    path = pull_adapter(repo_id, token=ALICE, endpoint=hub.url, cache_dir=tmp_path, retry=FAST)
    assert (path / "adapter_model.safetensors").read_bytes() == \
        (job_dir / "adapter" / "adapter_model.safetensors").read_bytes()
    assert not (path / "training").exists(), "training records are not needed to chat"
    assert resolve_base_model(path) == str(tiny_model_dir)
    assert pull_adapter(str(job_dir / "adapter")) == job_dir / "adapter", "a local folder is used in place"
    hub.stop()  # a cached snapshot still serves while the Hub is down
    try:
        assert pull_adapter(repo_id, token=ALICE, endpoint=hub.url, cache_dir=tmp_path, retry=FAST) == path
    finally:
        hub.start()


def test_missing_and_unauthorised_repos_fail_at_once_with_clear_errors(hub: HubServer, job_dir: Path,
                                                                       tmp_path: Path) -> None:
    from trainer_backend.hub import HubAuthError, HubError, HubNotFoundError, pull_adapter, push_adapter
    from trainer_backend.hub import resolve_base_model

    push_adapter(job_dir, repo_id="alice/secret", token=ALICE, endpoint=hub.url, retry=FAST)
    for repo, token in (("alice/does-not-exist", ALICE), ("alice/secret", BOB)):
        with pytest.raises(HubNotFoundError, match=f"download {repo}: repo not found or private: check the id"):
            pull_adapter(repo, token=token, endpoint=hub.url, cache_dir=tmp_path / "c", retry=FAST)
    before = len(hub.requests)
    bad = "hf_BadToken" + secrets.token_hex(12)
    with pytest.raises(HubAuthError, match="rejected the token") as err:
        push_adapter(job_dir, token=bad, endpoint=hub.url, retry=FAST)
    assert bad not in str(err.value) and err.value.status == 401
    assert [r for r in hub.requests[before:]] == [("GET", "/api/whoami-v2", 401)], "401 is never retried"
    with pytest.raises(HubAuthError, match="rejected the token"):
        pull_adapter("alice/secret", token=bad, endpoint=hub.url, cache_dir=tmp_path / "c", retry=FAST)
    with pytest.raises(HubAuthError, match="403"):
        push_adapter(job_dir, repo_id="bob/not-yours", token=ALICE, endpoint=hub.url, retry=FAST)
    with pytest.raises(HubError, match="not a LoRA adapter"):
        resolve_base_model(tmp_path)
    with pytest.raises(HubError, match="train the job first"):
        push_adapter(tmp_path, token=ALICE, endpoint=hub.url)


def test_metadata_the_hub_rejects_fails_once_without_retries(hub: HubServer, job_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer_backend.hub import HubError, push, push_adapter

    monkeypatch.setattr(push, "build_model_card", lambda *a, **k: "---\nbase_model: /home/me/model\n---\n# x\n")
    before = len(hub.requests)
    with pytest.raises(HubError, match="Invalid metadata in README.md.*must be a Hub repo id") as err:
        push_adapter(job_dir, repo_id="alice/bad-card", token=ALICE, endpoint=hub.url, retry=FAST)
    assert not err.value.transient
    assert [p for _, p, _ in hub.requests[before:]].count("/api/validate-yaml") == 1


def test_no_token_and_offline_mode_are_explained(hub: HubServer, job_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    import huggingface_hub.constants as constants

    from trainer_backend.hub import HubAuthError, HubError, push_adapter

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(HubAuthError, match="no Hugging Face token: sign in .* or set HF_TOKEN"):
        push_adapter(job_dir, endpoint=hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set"):
        push_adapter(job_dir, token=ALICE, endpoint=hub.url, retry=FAST)


# ---- retries and the Hub going down -----------------------------------------------------------------

def test_transient_failures_within_the_retry_budget_succeed(hub: HubServer, job_dir: Path) -> None:
    from trainer_backend.hub import push_adapter

    delays: list[float] = []
    hub.fail_next(1, 429, path_contains="/api/whoami-v2")
    hub.drop_next(1, path_contains="/api/repos/create")
    hub.fail_next(2, 503, path_contains="/commit/")
    before = len(hub.requests)
    result = push_adapter(job_dir, repo_id="flaky", token=ALICE, endpoint=hub.url,
                          retry=RetryPolicy(attempts=3, base_delay=0.01), sleep=delays.append)
    assert result.repo_id == "alice/flaky"
    assert hub.files(result.repo_id)["lora_studio.json"] == (job_dir / "adapter" / "lora_studio.json").read_bytes()
    served = [(p, s) for _, p, s in hub.requests[before:]]
    assert served[:3] == [("/api/whoami-v2", 429), ("/api/whoami-v2", 200), ("/api/repos/create", -1)]
    assert [s for p, s in served if p.endswith("/commit/main")] == [503, 503, 200]
    assert delays == [0.01, 0.01], "our backoff: whoami and create_repo, each retried once"
    assert LIBRARY_SLEEPS == [1, 2], "huggingface_hub retries the commit itself (1 s, 2 s)"


def test_hub_down_mid_push_fails_clearly_keeps_the_adapter_and_retry_succeeds(hub: HubServer,
                                                                              job_dir: Path) -> None:
    from trainer_backend.hub import HubUnavailableError, push_adapter

    before = _tree_digest(job_dir)
    hub.fail_next(1000, 503, path_contains="/commit/")  # the Hub dies after the repo is created
    with pytest.raises(HubUnavailableError, match="gave up after 3 attempts.*still on disk") as err:
        push_adapter(job_dir, repo_id="alice/outage", token=ALICE, endpoint=hub.url, retry=FAST)
    assert err.value.transient and err.value.status == 503
    hub.clear_faults()
    hub.stop()
    t0 = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="the Hub is unavailable .*ConnectError"):
        push_adapter(job_dir, token=ALICE, endpoint=hub.url, retry=FAST)
    assert time.perf_counter() - t0 < 5
    assert _tree_digest(job_dir) == before, "a failed push leaves the job dir untouched"
    hub.start()
    result = push_adapter(job_dir, repo_id="alice/outage", token=ALICE, endpoint=hub.url, retry=FAST)
    assert result.repo_id == "alice/outage" and "adapter_model.safetensors" in hub.files("alice/outage")


# ---- merged ---------------------------------------------------------------------------------------------

def test_merged_push_matches_base_plus_adapter(hub: HubServer, job_dir: Path, tiny_model_dir: Path,
                                               tmp_path: Path) -> None:
    import torch
    from huggingface_hub import ModelCard, snapshot_download
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from trainer_backend.hub import push_adapter

    result = push_adapter(job_dir, repo_id="alice/merge-me", token=ALICE, endpoint=hub.url, merged=True,
                          retry=FAST)
    assert result.merged is not None and result.merged.repo_id == "alice/merge-me-merged"
    assert hub.repo("alice/merge-me-merged").private
    folder = snapshot_download(result.merged.repo_id, token=ALICE, endpoint=hub.url, cache_dir=tmp_path)
    card = ModelCard.load(Path(folder) / "README.md")
    assert card.data.library_name == "transformers" and "merged-lora" in card.data.tags
    assert "AutoModelForCausalLM.from_pretrained(repo_id)" in card.text and "alice/merge-me" in card.text
    merged = AutoModelForCausalLM.from_pretrained(folder).eval()
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                          str(job_dir / "adapter")).eval()
    ids = torch.tensor([[3, 11, 200, 57, 9]])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, reference(input_ids=ids).logits,
                                   atol=1e-4, rtol=1e-4)
    assert not any("lora_" in name for name, _ in merged.named_parameters())


def test_a_merge_that_does_not_match_pushes_nothing(hub: HubServer, job_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer_backend.hub import HubError, merge, push_adapter

    monkeypatch.setattr(merge, "TOLERANCE", {"float32": -1.0, "bfloat16": -1.0})
    with pytest.raises(HubError, match="merged model does not match base\\+adapter"):
        merge.merge_adapter(job_dir / "adapter", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(HubError, match="does not match"):
        push_adapter(job_dir, repo_id="alice/bad-merge", token=ALICE, endpoint=hub.url, merged=True, retry=FAST)
    assert hub.repo("alice/bad-merge") is None, "the merge is checked before anything is uploaded"


# ---- secrets --------------------------------------------------------------------------------------------

def test_token_never_leaks(hub: HubServer, job: Any, monkeypatch: pytest.MonkeyPatch,
                           capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """The module's job trained with `hub.token: ${HF_TOKEN}` = the canary, and every push in this module used it.
    Push once more (adapter + merged, token from the spec), fail a push (token from HF_TOKEN): the token is in no
    job file, no file or commit on the Hub, no log line, no output of training or pushing, no error."""
    from trainer_backend.hub import HubError, push_adapter

    caplog.set_level(logging.DEBUG)
    assert job.hub.token is not None and job.hub.token.get_secret_value() == ALICE
    result = push_adapter(job.job_dir, token=job.hub.token, endpoint=hub.url, merged=True, retry=FAST)
    monkeypatch.setenv("HF_TOKEN", ALICE)
    errors = []
    hub.fail_next(1000, 503, path_contains="/commit/")
    try:
        push_adapter(job.job_dir, endpoint=hub.url, retry=FAST)
    except HubError as exc:
        assert exc.__cause__ is None and exc.__context__ is None, "the library's exception holds the request headers"
        errors.append(f"{exc!r} {exc}")
    assert errors, "the failing push must raise"

    canary = ALICE.encode()
    leaks = [str(p) for p in job.job_dir.rglob("*") if p.is_file() and canary in p.read_bytes()]
    leaks += [where for where, content in hub.state.all_stored_bytes() if canary in content]
    out, err = capfd.readouterr()
    texts = {"stdout": out, "stderr": err, "logs": caplog.text, "errors": " ".join(errors),
             **{f"training {k}": v for k, v in TRAINING_OUTPUT.items()}}
    leaks += [name for name, text in texts.items() if ALICE in text]
    assert leaks == [] and result.merged is not None
    assert len(list(hub.state.all_stored_bytes())) > 20 and TRAINING_OUTPUT["stderr"], "the grep saw real data"
    assert {"spec.yaml", "events.jsonl", "data_report.json", "adapter"} <= {p.name for p in job.job_dir.iterdir()}


def test_files_with_tokens_are_never_pushed(tmp_path: Path) -> None:
    from trainer_backend.hub import HubError, redact
    from trainer_backend.hub.push import scan_for_secrets

    token = "hf_" + "x" * 34
    assert redact(f"Bearer {token} and hf_oauth_{'y' * 30}") == "Bearer hf_*** and hf_***"
    (tmp_path / "ok.json").write_text('{"a": 1}')
    scan_for_secrets(tmp_path, token)
    (tmp_path / "notes.md").write_text(f"my token is {token}")
    with pytest.raises(HubError, match="notes.md contains what looks like a Hugging Face token") as err:
        scan_for_secrets(tmp_path, None)
    assert token not in str(err.value)


def test_job_store_records_trained_not_pushed_and_push_retries(hub: HubServer, job_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed push keeps the trained job ('trained_not_pushed', adapter on disk); Push later succeeds."""
    import shutil

    from trainer_backend.jobs import JobManager
    from trainer_backend.jobs.lifecycle import decide

    copy = tmp_path / "job"
    shutil.copytree(job_dir, copy)
    jm = JobManager(tmp_path / "store", autostart=False)
    spec = yaml.safe_load((copy / "spec.yaml").read_text())
    row = jm.store.create(status="succeeded", name="tiny-chat", job_dir=str(copy), spec=spec, owner="alice")
    monkeypatch.setenv("HF_TOKEN", ALICE)
    hub.stop()
    failed = jm.push(row.id, repo_id="alice/retry-me", endpoint=hub.url, retry=FAST)
    assert failed.status == "trained_not_pushed" and "unavailable" in failed.error and ALICE not in failed.error
    assert (copy / "adapter" / "adapter_model.safetensors").exists()
    assert decide(failed, 4, {"event": "push_failed", "error": "x"})[0] == "trained_not_pushed"
    hub.start()
    done = jm.push(row.id, repo_id="alice/retry-me", endpoint=hub.url, retry=FAST)
    assert done.status == "succeeded" and done.artifacts["hub_url"].endswith("alice/retry-me")
    assert jm.describe(row.id)["paths"]["hub_repo"] == "alice/retry-me"
