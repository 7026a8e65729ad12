"""Hub push/pull against a loopback Hub (tests/hub_server.py): real HfApi, hf_hub_download and peft, no internet.
Round trip, privacy, model card, naming, pull. Failures, retries, merges and secrets: test_hub_failures.py."""
from __future__ import annotations

import pytest
from hubhelpers import *  # noqa: F401,F403  (constants, utilities)
from hubhelpers import _spec, _tree_digest, hub, job, job_dir, loopback_hub  # noqa: F401  (fixtures, helpers)

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)


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

    from trainer_backend.spec import parse_spec
    from trainer_backend.training.adapter_meta import AdapterMeta

    meta = AdapterMeta(base_model="Qwen/Qwen2.5-0.5B-Instruct", trainer="dpo", chat_template="tokenizer",
                       end_of_turn="<|im_end|>", lora=True, quantization="int4",
                       metrics={"train_loss": 0.5, "eval_loss": 0.61, "eval_rewards/accuracies": 0.8})
    spec, _ = parse_spec({"project_name": "qwen-dpo", "model": {"base_model": "Qwen/Qwen2.5-0.5B-Instruct"},
                          "data": {"path": "Intel/orca_dpo_pairs", "train_split": "train"},
                          "training": {"trainer": "dpo", "quantization": "int4", "beta": 0.1,
                                       "dpo_loss_type": "sigmoid"},
                          "lora": {"enabled": True, "r": 16}})
    card = ModelCard(build_model_card("alice/qwen-dpo", meta, spec, None, license="apache-2.0",
                                      plot_note="loss plot skipped"))
    data = card.data.to_dict()
    assert data["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct" and data["datasets"] == ["Intel/orca_dpo_pairs"]
    assert data["license"] == "apache-2.0" and data["library_name"] == "peft"
    assert {"lora-studio", "dpo", "qlora"} <= set(data["tags"])
    assert "[Intel/orca_dpo_pairs](https://huggingface.co/datasets/Intel/orca_dpo_pairs)" in card.text
    assert "| eval_rewards/accuracies | 0.8 |" in card.text and "| beta | 0.1 |" in card.text
    assert "_loss plot skipped_" in card.text and "local folder" not in card.text
    reward = ModelCard(build_model_card("alice/rm", meta.model_copy(update={"trainer": "reward"}), spec, None))
    assert reward.data.pipeline_tag == "text-classification" and "AutoPeftModelForSequenceClassification" in reward.text


@pytest.mark.parametrize("variant", [
    {}, {"trainer": "generic", "chat_template": "none"}, {"prompt_template": {"preset": "alpaca"}},
    {"trainer": "reward"}, {"lora": False}, {"end_of_turn": "\n### End"}, {"merged_from": "alice/x"}])
def test_model_card_snippet_compiles_for_every_kind_of_job(variant: dict[str, Any]) -> None:
    from huggingface_hub import ModelCard

    from trainer_backend.model_card import build_model_card

    merged_from = variant.pop("merged_from", None)
    from trainer_backend.training.adapter_meta import AdapterMeta

    meta = AdapterMeta(**{"base_model": "Qwen/Qwen2.5-0.5B-Instruct", "trainer": "sft", "chat_template": "chatml",
                          "end_of_turn": "<|im_end|>", "lora": True, **variant})
    eot_token = meta.end_of_turn == "<|im_end|>"
    repo_id = "alice/x-merged" if merged_from else "alice/x"
    card = ModelCard(build_model_card(repo_id, meta, None, None, end_of_turn_is_token=eot_token,
                                      merged_from=merged_from))
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S).group(1)
    compile(snippet, "model card", "exec")
    assert ("AutoPeft" in snippet) == (meta.lora and not merged_from)
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


def test_evaluation_results_go_into_the_model_card(hub: HubServer, job_dir: Path, tmp_path: Path) -> None:
    """Evaluate saves evaluation.json with the job; the next push puts base vs fine-tuned into the card."""
    import shutil

    from trainer_backend.hub import push_adapter

    copy = tmp_path / "job"
    shutil.copytree(job_dir, copy)
    (copy / "evaluation.json").write_text(json.dumps({
        "rows": 20, "base": {"exact_match": 0.0, "perplexity": 551.9},
        "fine_tuned": {"exact_match": 0.95, "perplexity": 2.01}, "examples": [{"prompt": "private row"}]}))
    push_adapter(copy, repo_id="alice/evaluated", token=ALICE, endpoint=hub.url, retry=FAST)
    card = hub.files("alice/evaluated")["README.md"].decode()
    assert "## Evaluation" in card and "| exact_match | 0 | 0.95 |" in card
    assert "private row" not in card, "per-example rows (user data) stay off the card"
