"""Chat, compare and evaluate share loaded models: bounded by count and memory, least recently used out, and an
adapter pushed out of a loaded base is loaded again when it is asked for."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trainer_backend.generation import GenerationSettings
from trainer_backend.model_cache import MEMORY_ENV, MODELS_ENV, ModelCache, limits_from_env, model_bytes


def _linear(n: int) -> Any:
    import torch

    return torch.nn.Linear(n, n, bias=False)  # n*n float32 weights = 4*n*n bytes


def test_least_recently_used_model_goes_first_when_over_the_count() -> None:
    released: list[int] = []
    cache: ModelCache[Any] = ModelCache(max_models=2, max_bytes=1 << 40, on_evict=lambda: released.append(1))
    a = cache.get("a", lambda: _linear(4))
    cache.get("b", lambda: _linear(4))
    assert cache.get("a", lambda: pytest.fail("a is cached")) is a  # a is now the most recently used
    cache.get("c", lambda: _linear(4))
    assert cache.keys() == ["a", "c"] and cache.peek("b") is None and released == [1]
    assert cache.evictions == 1


def test_models_go_when_their_memory_together_is_over_the_cap() -> None:
    cache: ModelCache[Any] = ModelCache(max_models=10, max_bytes=3 * 4 * 64 * 64, on_evict=lambda: None)
    for key in "abc":
        cache.get(key, lambda: _linear(64))
    assert cache.total_bytes() == 3 * 4 * 64 * 64 and len(cache.keys()) == 3
    big = cache.get("big", lambda: _linear(100))  # 40,000 bytes: over the cap even alone
    assert cache.keys() == ["big"], "older models make room; the one in use stays even over the cap"
    assert model_bytes(big) == 4 * 100 * 100


def test_room_is_made_before_a_load_and_evicted_models_are_freed() -> None:
    """Loading a third model with a cap of two never holds three: the least recently used one is dropped (and
    collected) first. One still in use by a request stays whole until that request lets go of it."""
    import gc
    import weakref

    import torch

    freed: list[int] = []
    cache: ModelCache[Any] = ModelCache(max_models=2, max_bytes=1 << 40, on_freed=lambda: freed.append(1))
    a_ref = weakref.ref(cache.get("a", lambda: _linear(8)))
    in_use = cache.get("b", lambda: _linear(8))  # a request holds b
    weights = in_use.weight.detach().clone()

    def load_c() -> Any:
        assert cache.keys() == ["b"] and a_ref() is None, "a was dropped and collected before c loads"
        return _linear(8)

    cache.get("c", load_c)
    assert freed == [1]
    cache.get("d", lambda: _linear(8))  # b goes too, while the request still holds it
    assert cache.keys() == ["c", "d"] and freed == [1], "b is not freed while in use"
    assert torch.equal(in_use.weight, weights) and in_use(torch.ones(1, 8)).shape == (1, 8)
    del in_use
    gc.collect()
    assert freed == [1, 1], "the device cache is emptied once the request let go of b"


def test_a_loaded_model_is_served_while_another_loads_and_a_model_loads_once() -> None:
    import threading

    cache: ModelCache[Any] = ModelCache(max_models=3, max_bytes=1 << 40, on_evict=lambda: None)
    a = cache.get("a", lambda: _linear(4))
    loading, release = threading.Event(), threading.Event()
    loads: list[str] = []

    def slow_load() -> Any:
        loads.append("slow")
        loading.set()
        assert release.wait(10)
        return _linear(4)

    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("slow", slow_load))) for _ in range(2)]
    threads[0].start()
    assert loading.wait(10)
    threads[1].start()  # asks for the same model while it loads: waits for that load, loads nothing itself
    done = threading.Event()
    threading.Thread(target=lambda: (cache.get("a", lambda: pytest.fail("a is cached")), done.set())).start()
    assert done.wait(5), "a request for a loaded model does not wait for another model's load"
    release.set()
    for thread in threads:
        thread.join(10)
    assert loads == ["slow"] and len(results) == 2 and results[0] is results[1]
    assert cache.get("a", lambda: pytest.fail("a is cached")) is a


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODELS_ENV, "3")
    monkeypatch.setenv(MEMORY_ENV, "1.5")
    assert limits_from_env() == (3, int(1.5 * 1024 ** 3))
    monkeypatch.setenv(MODELS_ENV, "lots")
    monkeypatch.setenv(MEMORY_ENV, "0")
    with pytest.warns(UserWarning, match="LORA_STUDIO_CHAT_MODELS='lots'"):  # settings.py: named, then ignored
        count, memory = limits_from_env()
    assert count == 2 and memory > 0  # defaults: 2 models, half of the memory there is


def _random_adapter(base: Path, out: Path, seed: int, load: Any = None) -> Path:
    """A LoRA adapter with random (non-zero) weights on `base`, recorded as loading the base per `load`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer_backend.training.adapter_meta import AdapterMeta, write_adapter_meta

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    write_adapter_meta(out, AdapterMeta(base_model=str(base), chat_template="chatml", end_of_turn="<|im_end|>",
                                        model_load=load))
    return out


def test_a_base_evicted_while_it_streams_finishes_its_answer_unchanged(tiny_model_dir: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Count cap 1: a chat on another base evicts the one mid-answer; that answer still streams to its end, token
    for token the same as without the eviction (the request holds its model until it is done)."""
    import shutil

    from trainer_backend import inference
    from trainer_backend.training.adapter_meta import ModelLoad, read_adapter_meta, write_adapter_meta

    loads = [ModelLoad(base_model=str(tiny_model_dir), attn_implementation=kernel) for kernel in ("eager", "sdpa")]
    first_adapter = _random_adapter(tiny_model_dir, tmp_path / "adapter0", seed=0, load=loads[0])
    other = shutil.copytree(first_adapter, tmp_path / "adapter1")  # the same adapter on another way of loading
    write_adapter_meta(other, read_adapter_meta(other).model_copy(update={"model_load": loads[1]}))
    refs = [str(first_adapter), str(other)]
    settings = GenerationSettings(max_new_tokens=8)
    question = [{"role": "user", "content": "hello there"}]
    monkeypatch.setattr(inference, "MODELS", ModelCache(1, 1 << 40))
    expected = list(inference.chat_stream(refs[0], question, settings))
    assert len(expected) > 1, "streams in several pieces"

    monkeypatch.setattr(inference, "MODELS", ModelCache(1, 1 << 40))
    stream = inference.chat_stream(refs[0], question, settings)
    first = next(stream)
    inference.load_chat(refs[1])  # another base: the streaming one is evicted
    assert inference.MODELS.keys() == [loads[1].model_dump_json()]
    assert [first, *stream] == expected


def test_adapters_beyond_the_cap_are_unloaded_and_come_back_when_asked(tiny_model_dir: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer_backend import inference

    monkeypatch.setattr(inference, "MAX_ADAPTERS_PER_MODEL", 2)
    monkeypatch.setattr(inference, "MODELS", ModelCache(2, 1 << 40))
    refs = [str(_random_adapter(tiny_model_dir, tmp_path / f"adapter{i}", seed=i)) for i in range(3)]
    settings = GenerationSettings(max_new_tokens=4)
    question = [{"role": "user", "content": "hi"}]
    first = inference.compare(refs[0], question, settings)["fine_tuned"]
    chat, _ = inference.load_chat(refs[1])
    chat, adapter2 = inference.load_chat(refs[2])
    assert len(chat.adapters) == 2 and len(inference.MODELS.keys()) == 1, "one base, at most 2 adapters on it"
    assert inference.resolve_adapter(refs[0]).name not in chat.adapters
    assert inference.compare(refs[0], question, settings)["fine_tuned"] == first, "reloaded, same answer"
    assert adapter2.name in chat.adapters and len(chat.adapters) == 2


def test_chat_compare_evaluate_go_through_the_service(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A job id resolves to its folder, a path outside the data dir is refused before any model loads."""
    import shutil

    from trainer_backend.jobs import JobManager
    from trainer_backend.ui.service import StudioService

    service = StudioService(JobManager(tmp_path / "store", autostart=False))
    job_dir = tmp_path / "store" / "jobs" / "j1"
    _random_adapter(tiny_model_dir, job_dir / "adapter", seed=7)
    job = service.jobs.store.create(name="j1", status="succeeded", job_dir=str(job_dir))
    settings = GenerationSettings(max_new_tokens=3)
    answers = service.compare(job.id, [{"role": "user", "content": "hi"}], settings)
    assert set(answers) == {"base", "fine_tuned"}
    outside = tmp_path / "elsewhere"
    shutil.copytree(job_dir, outside)
    for call in (lambda: service.compare(str(outside), [{"role": "user", "content": "hi"}], settings),
                 lambda: list(service.chat(str(outside), [{"role": "user", "content": "hi"}], settings)),
                 lambda: service.evaluate(str(outside), None, 2, settings)):
        with pytest.raises(ValueError, match="adapter"):
            call()
