"""Chat and Evaluate: streaming that stops at end-of-turn, base vs fine-tuned, held-out metrics."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # trains, or starts the app / a browser (make test runs it)

POSITIVE = ["love", "great", "wonderful", "excellent", "enjoy"]
NEGATIVE = ["hate", "awful", "terrible", "horrible", "dislike"]
NOUNS = ["phone", "movie", "book", "pizza", "hotel", "song", "game", "car", "shoe", "laptop", "chair", "coffee",
         "museum", "park", "bike", "camera"]


def _rows(rng: random.Random, words: list[str], nouns: list[str], label: str, n: int) -> list[dict]:
    forms = ["I {w} this {n}.", "The {n} is {w}.", "What a {w} {n}!", "This {n} feels {w}."]
    out = []
    for i in range(n):
        text = rng.choice(forms).format(w=words[i % len(words)], n=nouns[i % len(nouns)])
        out.append({"messages": [{"role": "user", "content": f"Review: {text}\nSentiment?"},
                                 {"role": "assistant", "content": label}]})
    return out


@pytest.fixture(scope="module")
def sentiment_job(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model fine-tuned on keyword sentiment; held-out reviews use nouns never seen in training."""
    from trainer_backend.spec import parse_spec
    from trainer_backend.tiny_model import build_tiny_model
    from trainer_backend.training.run import run_training

    root = tmp_path_factory.mktemp("sentiment")
    rng = random.Random(0)
    train = _rows(rng, POSITIVE, NOUNS[:12], "positive", 24) + _rows(rng, NEGATIVE, NOUNS[:12], "negative", 24)
    held_out = _rows(rng, POSITIVE, NOUNS[12:], "positive", 10) + _rows(rng, NEGATIVE, NOUNS[12:], "negative", 10)
    for name, rows in (("train.jsonl", train), ("held_out.jsonl", held_out)):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus = [" ".join(m["content"] for m in r["messages"]) for r in train + held_out] * 3
    model = build_tiny_model(root / "model", corpus=corpus, vocab_size=400)
    spec, _ = parse_spec({
        "project_name": "sentiment", "output_dir": str(root / "job"), "model": {"base_model": str(model)},
        "data": {"path": str(root / "train.jsonl"), "chat_template": "chatml", "valid_split": "auto",
                 "valid_fraction": 0.15},
        "lengths": {"block_size": 64}, "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
        "training": {"max_steps": 80, "learning_rate": 3e-3, "batch_size": 8, "gradient_accumulation": 1,
                     "logging_steps": 20, "save_strategy": "no", "eval_strategy": "no", "warmup_ratio": 0.0,
                     "scheduler": "constant", "packing": False, "gradient_checkpointing": False}})
    run_training(spec)
    return {"job": str(root / "job"), "held_out": str(root / "held_out.jsonl")}


def test_stream_yields_incrementally_and_stops_at_end_of_turn(sentiment_job: dict) -> None:
    from trainer_backend.generation import GenerationSettings
    from trainer_backend.inference import chat_stream

    question = [{"role": "user", "content": "Review: I love this bike.\nSentiment?"}]
    chunks = list(chat_stream(sentiment_job["job"], question, GenerationSettings(max_new_tokens=40)))
    assert len(chunks) >= 2 and all(b.startswith(a) for a, b in zip(chunks, chunks[1:])), "text grows token by token"
    assert chunks[-1].strip() == "positive"
    assert "<|im_end|>" not in chunks[-1] and len(chunks) < 40, "generation stopped at the end-of-turn token"


def test_compare_base_and_fine_tuned_on_one_model(sentiment_job: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer_backend import inference
    from trainer_backend.generation import GenerationSettings
    from trainer_backend.model_cache import ModelCache

    monkeypatch.setattr(inference, "MODELS", ModelCache(2, 1 << 40))  # empty: other tests' models do not count
    answers = inference.compare(sentiment_job["job"],
                                [{"role": "user", "content": "Review: The car is awful.\nSentiment?"}],
                                GenerationSettings(max_new_tokens=8))
    assert answers["fine_tuned"] == "negative" and answers["base"] != answers["fine_tuned"]
    assert len(inference.MODELS.keys()) == 1, "base and fine-tuned share one loaded model"


def test_a_compare_turn_streams_both_sides_at_once(sentiment_job: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Chat tab's compare mode: base and fine-tuned answers grow together (one batched generate call, the
    adapter on for one row and off for the other), each the very answer it gives alone; without compare one row.
    A base that is not loaded yet is announced as a phase before it loads."""
    from trainer_backend import inference
    from trainer_backend.generation import GenerationSettings
    from trainer_backend.model_cache import ModelCache

    monkeypatch.setattr(inference, "MODELS", ModelCache(2, 1 << 40))  # empty: this turn has to load the base
    batches: list[int] = []
    real_generate = inference.ChatModel.stream_many

    def counted(self: Any, adapter: Any, asks: list, *args: Any, **kwargs: Any) -> Any:
        batches.append(len(asks))
        return real_generate(self, adapter, asks, *args, **kwargs)

    monkeypatch.setattr(inference.ChatModel, "stream_many", counted)
    question = [{"role": "user", "content": "Review: The car is awful.\nSentiment?"}]
    base_question = [{"role": "user", "content": "Tell me about the chair."}]  # its own history: other length
    settings = GenerationSettings(max_new_tokens=12, repetition_penalty=1.3)
    phases: list[str] = []
    turn = list(inference.chat_turn(sentiment_job["job"], question, base_question, settings, on_phase=phases.append))
    assert phases == ["loading model", "answering"] and turn[0] == ("", ""), "the load is announced before it runs"
    assert batches == [2], "one generation for both sides"
    tuned, base = turn[-1]
    assert tuned == "negative" and base and base != tuned
    first_base = next(i for i, (_, b) in enumerate(turn) if b)
    tuned_done = next(i for i, (t, _) in enumerate(turn) if t == tuned)
    assert first_base <= tuned_done < len(turn) - 1, f"the base answers while the fine-tuned one does: {turn}"
    chat, adapter = inference.load_chat(sentiment_job["job"])
    alone = chat.generate(adapter, base_question, settings, use_adapter=False)
    assert alone == base.strip(), "the padded batch row answers exactly as the base does alone"

    batches.clear()
    phases.clear()
    single = list(inference.chat_turn(sentiment_job["job"], question, None, settings, on_phase=phases.append))
    assert batches == [1] and single[-1] == ("negative", None) and phases == ["answering"], "loaded: no load phase"


def test_evaluate_held_out_fine_tuned_beats_base(sentiment_job: dict) -> None:
    from trainer_backend.evaluation.heldout import evaluate
    from trainer_backend.job_files import EVAL_FILE
    from trainer_backend.generation import GenerationSettings

    seen: list[float] = []
    report = evaluate(sentiment_job["job"], sentiment_job["held_out"], max_examples=20,
                      settings=GenerationSettings(max_new_tokens=8), progress=lambda f, _: seen.append(f))
    base, tuned = report.base, report.fine_tuned
    print(f"\nheld-out exact match: base {base['exact_match']:.2f} vs fine-tuned {tuned['exact_match']:.2f}; "
          f"perplexity {base['perplexity']:.1f} vs {tuned['perplexity']:.2f}")
    assert tuned["exact_match"] >= base["exact_match"] + 0.6
    assert tuned["perplexity"] < base["perplexity"] / 10
    assert seen[-1] == 1.0 and len(report.examples) == 20
    wrong_base = [e for e in report.examples if not e["base_correct"]]
    assert wrong_base and all(e["base_failure"] in (None, "empty", "too_long", "repetitive") for e in wrong_base)
    saved = json.loads((Path(sentiment_job["job"]) / EVAL_FILE).read_text())["held_out"]
    assert saved["fine_tuned"]["exact_match"] == tuned["exact_match"]


def test_evaluate_defaults_to_the_jobs_validation_split(sentiment_job: dict) -> None:
    from trainer_backend.evaluation.heldout import evaluate
    from trainer_backend.generation import GenerationSettings

    report = evaluate(sentiment_job["job"], max_examples=5, settings=GenerationSettings(max_new_tokens=4))
    assert report.rows == 5 and report.fine_tuned["eval_loss"] < report.base["eval_loss"]


def test_metrics() -> None:
    from trainer_backend.evaluation import exact_match, failure_kind, rouge_l

    assert exact_match("The  Answer, is: Paris!", "answer is paris")
    assert rouge_l("the capital is Paris", "Paris is the capital") == pytest.approx(1 / 3)  # LCS of 3 words: 1
    assert rouge_l("x", "y") == 0.0 and rouge_l("Paris", "paris.") == 1.0
    assert failure_kind("", "a") == "empty"
    assert failure_kind("po po po po po po po po po po", "a") == "repetitive"
    assert failure_kind(" ".join(f"w{i}" for i in range(40)), "short answer") == "too_long"


def test_tools_reach_every_prompt_of_chat_compare_and_stream(sentiment_job: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Chat tab's Tools box: chat_turn (both sides, one batch), compare and chat_stream render the tool schemas
    with the chat template (here TRL's qwen2_5, put on the adapter's tokenizer), and a history's calls and results
    too; without tools the prompt is as before."""
    from trainer_backend import inference
    from trainer_backend.data.vendor_templates import trl_vendor_templates
    from trainer_backend.generation import GenerationSettings
    from trainer_backend.tool_calls import normalize_tools

    chat, adapter = inference.load_chat(sentiment_job["job"])
    tok = chat.tokenizers[adapter.name]
    monkeypatch.setattr(tok, "chat_template", trl_vendor_templates()["qwen2_5"])
    prompts: list[str] = []
    real_encode = inference.encode_prompt

    def seen(*args: Any, **kwargs: Any) -> Any:
        ids = real_encode(*args, **kwargs)
        prompts.append(tok.decode(ids["input_ids"][0]))
        return ids

    monkeypatch.setattr(inference, "encode_prompt", seen)
    tools = normalize_tools([{"name": "get_weather", "description": "Weather in a city",
                              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    history = [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": "", "tool_calls": [call]},
               {"role": "tool", "content": '{"temp_c": 21}', "name": "get_weather"}]
    settings = GenerationSettings(max_new_tokens=4)
    turn = list(inference.chat_turn(sentiment_job["job"], history, history[:1], settings, tools=tools))
    assert turn and len(prompts) == 2, "both sides rendered"
    assert all('"name": "get_weather"' in p and "<tools>" in p for p in prompts), prompts
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompts[0]
    assert '<tool_response>\n{"temp_c": 21}\n</tool_response>' in prompts[0] and "<tool_response>" not in prompts[1]
    prompts.clear()
    inference.compare(sentiment_job["job"], history[:1], settings, tools=tools)
    list(inference.chat_stream(sentiment_job["job"], history[:1], settings, tools=tools))
    assert len(prompts) == 3 and all("<tools>" in p for p in prompts)
    prompts.clear()
    list(inference.chat_stream(sentiment_job["job"], history[:1], settings))
    assert len(prompts) == 1 and "<tools>" not in prompts[0]
