"""The optional judge: pairwise win rate of fine-tuned vs base answers, each prompt asked in both orders.

A tiny random model stands in for a local judge; a stub OpenAI-compatible server on 127.0.0.1 for an endpoint
judge (scripted verdicts, recorded requests)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from trainer_backend.evaluation import judge as judge_mod
from trainer_backend.evaluation.judge import JudgeItem, JudgeResult, judge_answers, parse_verdict

FAKE_KEY = "sk-judge-test-5e1f0c9a7b-never-show-me"


def items(n: int) -> list[JudgeItem]:
    return [JudgeItem(prompt=f"Question {i}: what is {i} + {i}?", base=f"BASE answer {i}: maybe {i}.",
                      fine_tuned=f"TUNED answer {i}: {2 * i}.") for i in range(n)]


def answers_in(prompt: str) -> tuple[str, str]:
    """(answer A, answer B) as the judge prompt shows them."""
    a = prompt.split("Answer A:\n", 1)[1].split("\n\nAnswer B:", 1)[0]
    b = prompt.split("Answer B:\n", 1)[1].split("\n\nWhich answer", 1)[0]
    return a, b


class StubJudge:
    """An OpenAI-compatible /chat/completions: `policy(prompt, authorization)` -> (status, reply text or body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.policy: Callable[[str, str], tuple[int, str]] = lambda prompt, auth: (200, "A")
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = self.headers.get("Authorization") or ""
                stub.requests.append({"path": self.path, "authorization": auth, "body": body})
                status, reply = stub.policy(body["messages"][0]["content"], auth)
                payload = (json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]})
                           if status == 200 else reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubJudge]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = StubJudge()
    yield server
    server.stop()


def prefers_tuned(prompt: str, auth: str) -> tuple[int, str]:
    a, _ = answers_in(prompt)
    return 200, "A." if a.startswith("TUNED") else "**B**"  # decorated replies, as chat models write them


def test_local_judge_asks_both_orders_and_counts_outcomes(tiny_model_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    real = judge_mod._local_verdict

    def spy(model: Any, tok: Any, text: str, letters: dict) -> Any:
        asked.append(text)
        return real(model, tok, text, letters)

    monkeypatch.setattr(judge_mod, "_local_verdict", spy)
    progress: list[tuple[float, str]] = []
    batch = items(5)
    result = judge_answers(batch, str(tiny_model_dir), progress=lambda f, m: progress.append((f, m)))

    # each prompt asked twice, the answers swapped: fine-tuned as A first, then base as A
    assert len(asked) == 10
    for i, item in enumerate(batch):
        assert answers_in(asked[2 * i]) == (item.fine_tuned, item.base)
        assert answers_in(asked[2 * i + 1]) == (item.base, item.fine_tuned)
        assert item.prompt in asked[2 * i] and item.prompt in asked[2 * i + 1]
    assert [f for f, _ in progress] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])

    assert result.judge == str(tiny_model_dir) and result.prompts == 5
    assert result.wins + result.losses + result.ties == 5
    verdicts = []
    for example, item in zip(result.examples, batch):
        tf, bf = example["verdict_tuned_first"], example["verdict_base_first"]
        assert tf in ("A", "B") and bf in ("A", "B")  # the letters' log-probabilities always decide
        expected = "win" if (tf, bf) == ("A", "B") else "loss" if (tf, bf) == ("B", "A") else "tie"
        assert example["outcome"] == expected and example["fine_tuned"] == item.fine_tuned
        verdicts += [tf, bf]
    outcomes = [e["outcome"] for e in result.examples]
    assert (result.wins, result.losses, result.ties) == (outcomes.count("win"), outcomes.count("loss"),
                                                        outcomes.count("tie"))
    assert result.win_rate == pytest.approx((result.wins + 0.5 * result.ties) / 5)
    assert result.position_consistency == pytest.approx((result.wins + result.losses) / 5)
    assert result.first_position_rate == pytest.approx(verdicts.count("A") / 10)
    assert result.ci is not None and result.ci[0] <= result.win_rate <= result.ci[1]

    # the report stores it as JSON and reads it back unchanged; the same judge gives the same verdicts
    again = JudgeResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    assert judge_answers(batch, str(tiny_model_dir)).examples == result.examples


def test_endpoint_judge_that_prefers_the_fine_tuned_answer(stub: StubJudge, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUDGE_TEST_UNSET_KEY", raising=False)
    stub.policy = prefers_tuned
    result = judge_answers(items(6), stub.url, endpoint_model="judge-model", key_env="JUDGE_TEST_UNSET_KEY")
    assert (result.wins, result.losses, result.ties, result.win_rate) == (6, 0, 0, 1.0)
    assert result.position_consistency == 1.0 and result.first_position_rate == 0.5
    assert result.ci is not None and result.ci[1] == pytest.approx(1.0) and result.ci[0] < 1.0
    assert "6 of 6 prompts" in result.summary() and "100.0 %" in result.summary()
    assert len(stub.requests) == 12
    first = stub.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["body"]["model"] == "judge-model" and first["body"]["temperature"] == 0
    assert first["authorization"] == ""  # no key in the environment: no Authorization header at all


def test_a_judge_that_always_says_a_is_caught_as_position_bias(stub: StubJudge) -> None:
    stub.policy = lambda prompt, auth: (200, "A")
    result = judge_answers(items(3), stub.url, endpoint_model="judge-model")
    assert (result.wins, result.losses, result.ties) == (0, 0, 3)
    assert result.win_rate == 0.5 and result.ci is None  # under 5 prompts: no interval
    assert result.position_consistency == 0.0 and result.first_position_rate == 1.0
    assert "3 ties (orders disagreed)" in result.summary() and "position bias" in result.summary()


def test_the_key_is_sent_but_never_shown(stub: StubJudge, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_TEST_KEY", FAKE_KEY)
    stub.policy = prefers_tuned
    result = judge_answers(items(2), stub.url, endpoint_model="judge-model", key_env="JUDGE_TEST_KEY")
    assert [r["authorization"] for r in stub.requests] == [f"Bearer {FAKE_KEY}"] * 4
    assert result.judge == stub.url
    for shown in (json.dumps(result.to_dict()), repr(result), result.summary()):
        assert FAKE_KEY not in shown


def test_a_refused_key_fails_without_showing_it(stub: StubJudge, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_TEST_KEY", FAKE_KEY)
    stub.policy = lambda prompt, auth: (401, json.dumps({"error": f"invalid api key: {auth}"}))
    with pytest.raises(RuntimeError) as caught:
        judge_answers(items(2), stub.url, endpoint_model="judge-model", key_env="JUDGE_TEST_KEY")
    message = str(caught.value)
    assert "401" in message and stub.url.rstrip("/") in message and "invalid api key" in message
    assert FAKE_KEY not in message and FAKE_KEY not in repr(caught.value)
    assert len(stub.requests) == 1  # a 401 is not retried


def test_a_busy_endpoint_is_retried(stub: StubJudge, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(judge_mod.time, "sleep", waits.append)
    seen = {"n": 0}

    def busy_once(prompt: str, auth: str) -> tuple[int, str]:
        seen["n"] += 1
        return (503, "overloaded") if seen["n"] == 1 else prefers_tuned(prompt, auth)

    stub.policy = busy_once
    result = judge_answers(items(2), stub.url, endpoint_model="judge-model")
    assert result.wins == 2 and len(stub.requests) == 5 and len(waits) == 1


def test_an_endpoint_needs_a_model_name(stub: StubJudge) -> None:
    with pytest.raises(ValueError, match="judge_model"):
        judge_answers(items(2), stub.url)
    assert stub.requests == []


def test_verdicts_are_read_from_decorated_replies() -> None:
    replies = {"A": "A", "A.": "A", "**B**": "B", "Answer: B": "B", " b ": None, "Both are good": None,
               "": None, "AB": None}
    assert {reply: parse_verdict(reply) for reply in replies} == replies
