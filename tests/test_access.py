"""Who may train: local apps anyone; Spaces the owner, the owning org's members, and the allow-list."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from trainer_backend.access import AccessDenied, Identity, can_train, identify, require_trainer
from trainer_backend.uploads import UnsafePath, check_client_path, sanitize_filename


@pytest.fixture
def space(monkeypatch: pytest.MonkeyPatch):
    def configure(owner: str, allowed: str = "", zero_gpu: bool = False) -> None:
        monkeypatch.setenv("SPACE_ID", f"{owner}/studio")
        monkeypatch.setenv("SPACE_AUTHOR_NAME", owner)
        monkeypatch.setenv("LORA_STUDIO_ALLOWED_USERS", allowed)
        monkeypatch.setenv("SPACES_ZERO_GPU", "true" if zero_gpu else "false")
    return configure


def test_local_app_needs_no_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert can_train(Identity())[0]


def test_space_rules(space) -> None:
    space("acme-org", allowed="Friend")
    assert not can_train(Identity())[0]
    assert can_train(Identity("alice", ("acme-org",)))[0], "org members may train"
    assert not can_train(Identity("mallory", ("other-org",)))[0]
    assert can_train(Identity("friend"))[0], "allow-list is case-insensitive"
    space("alice")
    assert can_train(Identity("Alice"))[0]


def test_zero_gpu_refuses_training_with_a_reason(space) -> None:
    space("alice", zero_gpu=True)
    with pytest.raises(AccessDenied, match="ZeroGPU"):
        require_trainer(Identity("alice"))


def test_oauth_profile_wins_and_tokens_are_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    ident = identify(None, SimpleNamespace(username="alice"), None)
    assert ident.username == "alice"
    assert "secret" not in repr(Identity("bob", (), "hf_secret"))


def test_client_paths(tmp_path) -> None:
    inside = tmp_path / "uploads" / "a.jsonl"
    inside.parent.mkdir()
    inside.write_text("{}")
    assert check_client_path(str(inside), [tmp_path], "data.path") == str(inside.resolve())
    assert check_client_path("HuggingFaceH4/no_robots", [tmp_path], "data.path") == "HuggingFaceH4/no_robots"
    for bad in (str(tmp_path / ".." / "x.jsonl"), "/etc/passwd", f"{inside},/etc/hosts"):
        with pytest.raises(UnsafePath):
            check_client_path(bad, [tmp_path], "data.path")
    assert sanitize_filename("../../etc/pass wd.jsonl") == "pass_wd.jsonl"
    assert sanitize_filename("..hidden") == "hidden"


@pytest.mark.parametrize("answer, expected", [
    (401, "was rejected"), (403, "was rejected"), (503, "answered HTTP 503"), (None, "could not be reached")])
def test_a_hub_outage_is_not_called_a_rejected_token(answer: int | None, expected: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A token is refused either way, but only a token the Hub turned down is called rejected; when the Hub is
    down the caller is told so (and that trying again will do), not to log in again."""
    import http.server
    import socket
    import threading

    from trainer_backend.access import HubUnreachable, check_hub_read, identity_from_token

    class Hub(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(answer or 500)
            self.end_headers()
            self.wfile.write(b'{"error": "nope"}')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    port = server.server_address[1]
    if answer is None:  # nothing listens there
        server.server_close()
    else:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("SPACE_ID", "owner/studio")  # check_hub_read asks the Hub on a Space only
    try:
        with pytest.raises(AccessDenied, match=expected) as refused:
            identity_from_token(f"hf_outage{answer}{socket.gethostname()}")
        with pytest.raises(AccessDenied) as read_refused:  # may this caller read a repo: the same distinction
            check_hub_read(f"owner/outage-{answer}", token=f"hf_outage{answer}{socket.gethostname()}")
    finally:
        if answer is not None:
            server.shutdown()
            server.server_close()
    assert isinstance(refused.value, HubUnreachable) == (answer not in (401, 403))
    assert "hf_outage" not in str(refused.value), "the token is never in the message"
    assert ("try again" in str(read_refused.value)) == (answer not in (401, 403)), str(read_refused.value)
    assert "hf_outage" not in str(read_refused.value)


def test_one_scrubber_for_specs_cards_and_messages() -> None:
    """What a refused spec shows (masked), what a model card carries (dropped) and what a message says
    (redacted) come from one rule: no secret-keyed value, no token-shaped text, at any depth."""
    from trainer_backend.jobs.intake import redacted
    from trainer_backend.redaction import redact, without_secrets

    token = "hf_" + "a1B2c3D4e5" * 3
    spec = {"hub": {"token": token, "repo_id": "alice/x"}, "env": [{"OAUTH_CLIENT_SECRET": "s3"}],
            "data": {"path": f"/tmp/{token}.jsonl"}, "training": {"max_steps": 3}}
    shown = redacted(spec)
    assert shown["hub"] == {"token": "***", "repo_id": "alice/x"} and shown["env"] == [{"OAUTH_CLIENT_SECRET": "***"}]
    assert token not in str(shown) and shown["training"] == {"max_steps": 3}
    carried = without_secrets(spec)
    assert carried["hub"] == {"repo_id": "alice/x"} and carried["env"] == [{}] and token not in str(carried)
    assert redact(f"401 for {token} and sk-own", "sk-own") == "401 for hf_*** and hf_***"
