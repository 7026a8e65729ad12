"""Hub failures and secrets: transient errors, the Hub going down mid-push, merged pushes that must match,
tokens that must never leak, and the job store's trained_not_pushed state."""
from __future__ import annotations

import pytest
from hubhelpers import *  # noqa: F401,F403  (constants, utilities)
from hubhelpers import _spec, _tree_digest, hub, job, job_dir, loopback_hub  # noqa: F401  (fixtures, helpers)

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)


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
    from trainer_backend.run_events import PushFailed

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
    assert decide(failed, None, PushFailed(error="x"))[0] == "trained_not_pushed"
    hub.start()
    done = jm.push(row.id, repo_id="alice/retry-me", endpoint=hub.url, retry=FAST)
    assert done.status == "succeeded" and done.artifacts["hub_url"].endswith("alice/retry-me")
    assert jm.describe(row.id)["paths"]["hub_repo"] == "alice/retry-me"
