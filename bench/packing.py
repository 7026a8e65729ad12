"""2. Packing: padding share of the batches actually fed to the model, and wall time per epoch, for LoRA Studio's
default (bfd packing, padding-free) vs. the naive recipe (no packing, every sample padded to max_length), on
real alpaca and chat files. Plus a correctness check that packing does not leak attention across samples.

The trainers are the real ones: `trainer_module('sft').build(ctx)` from the same prepared data; only
`training.packing` (and, for the naive recipe, the collator's padding length) differ. Padding share is counted
on the tensors `trainer.get_train_dataloader()` yields: padded positions / all positions fed, where padded
positions = positions fed - tokens in the dataset (cross-checked against attention_mask where there is one).
Also reported, not judged: dynamic padding without packing (LoRA Studio's `packing: false`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .common import ALPACA_FILES, CHAT_GSM8K, Result, model_dir, ratio, verdict

PAD_TARGET = 0.02   # padding share with packing
SPEEDUP_TARGET = 2.0


@dataclass
class Config:
    model: str = "small"
    rows: int = 24
    block_size: int = 1024          # the product default (lengths.block_size) = the naive recipe's max_length
    batch_size: int = 2
    grad_accum: int = 4
    # product defaults for the template too: data.chat_template 'tokenizer' (the model's own ChatML)
    datasets: dict = field(default_factory=lambda: {"alpaca": ALPACA_FILES[0], "chat": CHAT_GSM8K})
    time_dynamic: bool = True


QUICK = Config(model="tiny", rows=12, block_size=256, batch_size=2, grad_accum=1, time_dynamic=False)


def _spec(cfg: Config, data: Path, work: Path, packing: bool) -> Any:
    from trainer_backend.spec import parse_spec

    raw = {"project_name": "bench-packing", "output_dir": str(work),
           "model": {"base_model": str(model_dir(cfg.model))},
           "data": {"path": str(data), "max_rows": cfg.rows},
           "lengths": {"block_size": cfg.block_size, "model_max_length": max(2048, cfg.block_size)},
           "training": {"epochs": 1, "batch_size": cfg.batch_size, "gradient_accumulation": cfg.grad_accum,
                        "packing": packing, "logging_steps": 1000, "save_strategy": "no", "eval_strategy": "no",
                        "use_cpu": True}}
    return parse_spec(raw)[0]


def _trainer(spec: Any, tok: Any, train: Any, naive: bool = False) -> Any:
    from trainer_backend.training.common import TrainContext
    from trainer_backend.training.model_loading import load_base_model, lora_config
    from trainer_backend.training.trainers import trainer_module

    from transformers import PrinterCallback

    ctx = TrainContext(spec, load_base_model(spec, "causal", tok), tok, train, None, lora_config(spec))
    trainer = trainer_module("sft").build(ctx)
    trainer.remove_callback(PrinterCallback)
    if naive:  # the seeds' recipe: every sample padded to max_length
        trainer.data_collator.pad_to_multiple_of = spec.lengths.block_size
    return trainer


def _padding(trainer: Any, dataset_tokens: int) -> dict[str, Any]:
    fed = masked_pad = batches = 0
    for batch in trainer.get_train_dataloader():
        batches += 1
        fed += batch["input_ids"].numel()
        if "attention_mask" in batch:
            masked_pad += int((batch["attention_mask"] == 0).sum())
    pad = fed - dataset_tokens
    return {"positions_fed": fed, "dataset_tokens": dataset_tokens, "padding": pad,
            "padding_share": pad / fed if fed else float("nan"), "attention_mask_padding": masked_pad,
            "batches": batches}


def _epoch(trainer: Any) -> dict[str, Any]:
    """One epoch: Trainer's train_runtime (wall), and this process's CPU seconds over the same call (training is
    in-process and single-threaded here, so CPU time is what the epoch would take on an idle core)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = trainer.train()
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {"epoch_s": out.metrics["train_runtime"], "wall_s": wall, "epoch_cpu_s": cpu,
            "steps": trainer.state.global_step, "tokens_seen": trainer.state.num_input_tokens_seen}


def leak_check(trainer: Any) -> dict[str, Any]:
    """Feed one real packed batch (exactly as the collator built it) and each of its samples alone; logits of
    each sample must match. Negative control: the same packed row *without* position ids must differ (i.e. the
    check can fail)."""
    import torch

    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model
    was_training = model.training
    model.eval()
    pos = batch["position_ids"][0]
    starts = (pos == 0).nonzero().flatten().tolist() + [pos.numel()]
    segments = [(a, b) for a, b in zip(starts, starts[1:]) if b > a]
    out: dict[str, Any] = {"samples_in_row": len(segments), "row_tokens": int(pos.numel())}
    impls = ["sdpa", "eager"]
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    original = base.config._attn_implementation
    try:
        for impl in impls:
            try:
                base.set_attn_implementation(impl)
            except Exception as exc:  # noqa: BLE001
                out[impl] = f"n/a ({type(exc).__name__})"
                continue
            with torch.no_grad():
                kwargs = {k: v for k, v in batch.items() if k not in ("labels",)}
                packed = model(**kwargs, use_cache=False).logits[0]
                diff = 0.0
                for a, b in segments:
                    alone = model(input_ids=batch["input_ids"][:, a:b], use_cache=False).logits[0]
                    diff = max(diff, float((packed[a:b] - alone).abs().max()))
                no_pos = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
                control = max(float((no_pos[a:b] - packed[a:b]).abs().max()) for a, b in segments[1:]) \
                    if len(segments) > 1 else float("nan")
            out[impl] = {"max_abs_logit_diff": diff, "control_without_position_ids": control,
                         "isolated": diff < 1e-3 and (len(segments) < 2 or control > 1e-2)}
    finally:
        base.set_attn_implementation(original)
        model.train(was_training)
    out["ok"] = all(isinstance(out[i], dict) and out[i]["isolated"] for i in impls if isinstance(out[i], dict))
    return out


def _one_dataset(name: str, data: Path, cfg: Config, work: Path) -> dict[str, Any]:
    from trainer_backend.data import prepare_data
    from trainer_backend.training.model_loading import load_tokenizer

    spec_packed = _spec(cfg, data, work / f"{name}-packed", True)
    spec_plain = _spec(cfg, data, work / f"{name}-plain", False)
    tok = load_tokenizer(spec_packed.model)
    prepared = prepare_data(spec_packed, tok)
    train, _ = prepared.to_datasets()
    lengths = [len(x) for x in train["input_ids"]]
    tokens = sum(lengths)
    res: dict[str, Any] = {"rows": len(lengths), "tokens": tokens, "median_len": sorted(lengths)[len(lengths) // 2],
                           "max_len": max(lengths), "block_size": cfg.block_size}
    packed = _trainer(spec_packed, tok, train)
    res["packed"] = _padding(packed, tokens)
    res["leak"] = leak_check(packed)
    naive = _trainer(spec_plain, tok, train, naive=True)
    res["naive"] = _padding(naive, tokens)
    dynamic = _trainer(spec_plain, tok, train)
    res["dynamic"] = _padding(dynamic, tokens)
    # alternate the timed epochs so load drift hits both; warm-up is part of each trainer's own first epoch
    res["naive"].update(_epoch(naive))
    res["packed"].update(_epoch(packed))
    if cfg.time_dynamic:
        res["dynamic"].update(_epoch(dynamic))
    res["speedup"] = ratio(res["naive"]["epoch_s"], res["packed"]["epoch_s"])
    res["speedup_cpu"] = ratio(res["naive"]["epoch_cpu_s"], res["packed"]["epoch_cpu_s"])
    if "epoch_s" in res["dynamic"]:
        res["packed_vs_dynamic"] = ratio(res["dynamic"]["epoch_s"], res["packed"]["epoch_s"])
    return res


def run(work: Path, quick: bool = False, cfg: Optional[Config] = None) -> Result:
    cfg = cfg or (QUICK if quick else Config())
    work.mkdir(parents=True, exist_ok=True)
    figs: dict[str, Any] = {"config": {k: str(v) for k, v in vars(cfg).items()}}
    parts, ok = [], True
    for name, data in cfg.datasets.items():
        r = figs[name] = _one_dataset(name, Path(data), cfg, work)
        ok &= r["packed"]["padding_share"] <= PAD_TARGET and r["speedup"] >= SPEEDUP_TARGET and r["leak"]["ok"]
        dyn = f", dynamic {100 * r['dynamic']['padding_share']:.1f}%"
        dyn_t = (f"; dynamic padding {r['dynamic']['epoch_s']:.1f} s (packed = {r['packed_vs_dynamic']:.2f}x its "
                 f"speed)") if "epoch_s" in r["dynamic"] else ""
        parts.append(f"{name} ({r['rows']} rows, median {r['median_len']} tok, block {cfg.block_size}): padding "
                     f"{100 * r['packed']['padding_share']:.1f}% packed vs {100 * r['naive']['padding_share']:.1f}% "
                     f"naive{dyn}; epoch {r['packed']['epoch_s']:.1f} s vs {r['naive']['epoch_s']:.1f} s = "
                     f"{r['speedup']:.2f}x faster (CPU time {r['speedup_cpu']:.2f}x){dyn_t}")
    leaks = [figs[n]["leak"] for n in cfg.datasets]
    leak_ok = all(l["ok"] for l in leaks)
    worst = max(l["sdpa"]["max_abs_logit_diff"] for l in leaks if isinstance(l.get("sdpa"), dict))
    ctrl = min((l["sdpa"]["control_without_position_ids"] for l in leaks if isinstance(l.get("sdpa"), dict)),
               default=float("nan"))
    judged = None if quick else bool(ok and leak_ok)
    line = (f"packing: {'; '.join(parts)}; no cross-sample attention (sdpa+eager): "
            f"{'OK' if leak_ok else 'LEAK'} (max |dlogit| {worst:.1e}, without position ids {ctrl:.1e}); "
            f"targets padding <= {100 * PAD_TARGET:.0f}%, >= {SPEEDUP_TARGET:.0f}x{verdict(judged)}")
    if not leak_ok:  # a correctness failure is reported even in smoke mode
        judged = False
    return Result("packing", line, figs, judged)
