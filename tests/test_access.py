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
