"""5. GPU: LoRA / QLoRA SFT on a Llama-shaped ~1.2B model built from a config with random weights (no download),
through LoRA Studio's trainer (bfd packing = padding-free, bf16, attention 'auto' = flash-attention 2 when
installed else SDPA, gradient checkpointing) vs. a plain TRL baseline (SFTTrainer defaults: no packing, pad to
the longest in the batch, SDPA, TRL's default gradient checkpointing) in the same session. Each variant is its
own child process, so peak-VRAM figures are clean.

Variants: trl_baseline; lora; lora_liger (Liger kernels on, when liger-kernel is installed); lora_no_ckpt;
lora_nopack (packing off: dynamic padding); qlora (bitsandbytes 4-bit nf4); qlora_liger. Micro-batches hold about
the same number of real tokens on both sides: 2 packed blocks of 2048 for LoRA Studio, 16 alpaca samples for TRL.

Figures per variant: tokens/s (non-padding tokens fed / train_runtime, as in bench/overhead.py), peak VRAM
(torch.cuda.max_memory_allocated and _reserved), MFU = achieved model FLOP/s / the bf16 matmul peak measured on
the device (8192^3 matmuls), where model FLOPs per token = 4*N (LoRA/QLoRA: frozen base, forward + activation
gradients; 6*N for full fine-tuning) + attention 12 * layers * hidden * (mean causal context per token of the
real, unpadded samples), and N = the base model's matmul parameters (all linear layers incl. lm_head, not the
embedding lookup). Gradient checkpointing's recompute and LoRA's own small matmuls are not counted (model FLOPs,
not hardware FLOPs).

Without CUDA (this CPU box, CI) `run()` is a smoke test of the harness: the tiny model, 2 steps per variant,
fp32, in-process, the CPU matmul peak; figures are not GPU results. On a GPU box:

    python bench/run.py --only gpu          # or: python -m bench.gpu   (prints every figure as JSON)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (ALPACA_FILES, REPO, Result, child_env, model_dir, new_run_dir, python,  # noqa: E402
                          ratio, run_child, verdict, write_json)

MFU_TARGET = 0.45
SPEED_TARGET = 1.8
VRAM_TARGET = 0.5

# Llama-3.2-1B's shape (random weights): 16 layers, 2048 hidden, GQA 32/8 heads, 128k vocab, tied embeddings.
LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=128256, max_position_embeddings=4096, rope_theta=500000.0,
                tie_word_embeddings=True)


@dataclass
class Config:
    block_size: int = 2048
    batch_size: int = 2             # LoRA Studio: packed blocks of block_size per micro-batch (~4k tokens)
    baseline_batch_size: int = 16   # TRL baseline: samples per micro-batch (~4k real tokens of alpaca)
    max_steps: int = 30
    rows: int = 2449
    variants: list = field(default_factory=lambda: ["trl_baseline", "lora", "lora_liger", "lora_no_ckpt",
                                                    "lora_nopack", "qlora", "qlora_liger"])


QUICK = Config(block_size=256, batch_size=2, baseline_batch_size=2, max_steps=2, rows=16,
               variants=["trl_baseline", "lora", "lora_liger", "lora_nopack", "qlora"])


# ---- child: one variant in this process ------------------------------------------------------------------------

def _alpaca_rows(n: int) -> list[dict]:
    rows = []
    for line in ALPACA_FILES[0].read_text(encoding="utf-8").splitlines()[:n]:
        r = json.loads(line)
        rows.append(r)
    return rows


def _matmul_peak(cuda: bool) -> dict[str, Any]:
    import torch

    if cuda:
        n, dtype, dev, iters = 8192, torch.bfloat16, "cuda", 50
    else:
        n, dtype, dev, iters = 512, torch.float32, "cpu", 5
    a, b = torch.randn(n, n, dtype=dtype, device=dev), torch.randn(n, n, dtype=dtype, device=dev)
    best = 0.0
    for _ in range(3):
        for _ in range(2):
            a @ b
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(iters):
            a @ b
        if cuda:
            torch.cuda.synchronize()
        best = max(best, 2 * n ** 3 * iters / (time.perf_counter() - t))
    return {"peak_flops": best, "matmul": f"{n}x{n} {str(dtype).replace('torch.', '')} on {dev}"}


def _flops_per_token(model: Any, lengths: list[int], full_ft: bool = False) -> dict[str, float]:
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config
    n = 0
    for name, mod in base.named_modules():
        # bitsandbytes' Linear4bit/Linear8bitLt subclass nn.Linear; PEFT's wrappers (which hold a `base_layer`)
        # and the LoRA A/B matrices are skipped so each base matmul is counted once
        if isinstance(mod, torch.nn.Linear) and not hasattr(mod, "base_layer") and "lora_" not in name:
            n += int(mod.in_features) * int(mod.out_features)
    # causal attention pairs per token over the real samples: sum s(s+1)/2 / sum s
    ctx = sum(s * (s + 1) / 2 for s in lengths) / max(sum(lengths), 1)
    attn = 12 * cfg.num_hidden_layers * cfg.hidden_size * ctx
    return {"N_matmul_params": n, "mean_causal_context": ctx,
            "flops_per_token": (6 if full_ft else 4) * n + attn, "attention_flops_per_token": attn}


def _timed_callback() -> Any:
    from transformers import TrainerCallback

    class Points(TrainerCallback):
        def __init__(self) -> None:
            self.points: list[tuple[float, int]] = []

        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
            if logs and "loss" in logs:
                self.points.append((time.time(), state.num_input_tokens_seen))
    return Points()


def _baseline_trainer(a: argparse.Namespace, cuda: bool, cb: Any) -> tuple[Any, list[int]]:
    """Plain TRL: SFTTrainer defaults (no packing, pad to longest), LoRA, bf16 on GPU; messages from alpaca."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    rows = _alpaca_rows(a.rows)
    msgs = [{"messages": [{"role": "user", "content": (r["instruction"] + ("\n\n" + r["input"] if r["input"] else ""))},
                          {"role": "assistant", "content": r["output"]}]} for r in rows]
    tok = AutoTokenizer.from_pretrained(a.model)
    cfg = SFTConfig(output_dir=str(Path(a.work) / "trl"), max_steps=a.max_steps,
                    per_device_train_batch_size=a.baseline_batch_size,
                    gradient_accumulation_steps=1, learning_rate=2e-4, max_length=a.block_size, bf16=cuda,
                    use_cpu=not cuda, logging_steps=1, save_strategy="no", report_to="none",
                    include_num_input_tokens_seen="non_padding", disable_tqdm=True,
                    model_init_kwargs={"dtype": torch.bfloat16 if cuda else torch.float32})
    trainer = SFTTrainer(model=a.model, args=cfg, train_dataset=Dataset.from_list(msgs), processing_class=tok,
                         peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                                task_type="CAUSAL_LM"), callbacks=[cb])
    trainer.remove_callback(PrinterCallback)
    return trainer, [len(x) for x in trainer.train_dataset["input_ids"]]


def _ours_trainer(a: argparse.Namespace, cuda: bool, cb: Any) -> tuple[Any, list[int]]:
    from transformers import PrinterCallback

    from trainer_backend.spec import parse_spec
    from trainer_backend.training import common as common_mod
    from trainer_backend.training.model_loading import load_base_model, lora_config
    from trainer_backend.training.run import prepare_job
    from trainer_backend.training.trainers import sft, trainer_module

    v = a.variant
    spec = parse_spec({
        "project_name": "bench-gpu", "output_dir": str(Path(a.work) / v), "model": {"base_model": a.model},
        "data": {"path": str(ALPACA_FILES[0]), "max_rows": a.rows},
        "lengths": {"block_size": a.block_size, "model_max_length": max(4096, a.block_size)},
        "training": {"max_steps": a.max_steps, "gradient_accumulation": 1,
                     # lora_nopack: LoRA Studio with packing off = dynamic padding, the baseline's batch size
                     "packing": False if "nopack" in v else None,
                     "batch_size": a.baseline_batch_size if "nopack" in v else a.batch_size,
                     "quantization": "int4" if v.startswith("qlora") else "none",
                     "gradient_checkpointing": "no_ckpt" not in v, "logging_steps": 1,
                     "save_strategy": "no", "eval_strategy": "no"}})[0]  # packing, precision, attention: defaults
    tok, prepared = prepare_job(spec)
    train, _ = prepared.to_datasets()
    model = load_base_model(spec, "causal", tok)
    original = sft.common_args
    if v.endswith("_liger"):  # no spec key yet: what a `training.use_liger` default would pass to TRL
        sft.common_args = lambda ctx: {**original(ctx), "use_liger_kernel": True}
    try:
        trainer = trainer_module("sft").build(common_mod.TrainContext(spec, model, tok, train, None,
                                                                      lora_config(spec), [cb]))
    finally:
        sft.common_args = original
    trainer.remove_callback(PrinterCallback)
    return trainer, [len(x) for x in train["input_ids"]]


def child(a: argparse.Namespace) -> None:
    import torch

    cuda = torch.cuda.is_available()
    out: dict[str, Any] = {"variant": a.variant, "cuda": cuda}
    if cuda:
        out["device"] = torch.cuda.get_device_name(0)
    if a.variant == "peak":
        out.update(_matmul_peak(cuda))
        write_json(Path(a.out), out)
        return
    if a.variant.endswith("_liger"):
        import importlib.util

        if importlib.util.find_spec("liger_kernel") is None:
            out["skipped"] = "liger-kernel is not installed (pip install liger-kernel)"
            write_json(Path(a.out), out)
            return
    cb = _timed_callback()
    trainer, lengths = (_baseline_trainer if a.variant == "trl_baseline" else _ours_trainer)(a, cuda, cb)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    metrics = trainer.train().metrics
    tokens = trainer.state.num_input_tokens_seen
    out.update({"tokens": tokens, "train_runtime": metrics["train_runtime"],
                "tokens_per_s": tokens / metrics["train_runtime"], "steps": trainer.state.global_step,
                "attn_implementation": trainer.model.get_base_model().config._attn_implementation,
                "bf16": bool(trainer.args.bf16), "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
                "packing": bool(getattr(trainer.args, "packing", False)),
                "liger": bool(getattr(trainer.args, "use_liger_kernel", False))})
    pts = cb.points
    if len(pts) >= 3:  # drop the first step (warm-up, kernel selection)
        out["steady_tokens_per_s"] = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
    out.update(_flops_per_token(trainer.model, lengths))
    if cuda:
        out["peak_vram_allocated_gb"] = torch.cuda.max_memory_allocated() / 2 ** 30
        out["peak_vram_reserved_gb"] = torch.cuda.max_memory_reserved() / 2 ** 30
    write_json(Path(a.out), out)


# ---- parent ----------------------------------------------------------------------------------------------------

def build_llama(out: Path) -> Path:
    """A Llama-3.2-1B-shaped model with random weights, saved in bf16, with the bench's locally trained tokenizer."""
    import shutil

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (out / "config.json").exists():
        return out
    tok = AutoTokenizer.from_pretrained(model_dir("small"))
    cfg = LlamaConfig(**LLAMA_1B, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def run(work: Path, quick: bool = False, cfg: Optional[Config] = None) -> Result:
    import torch

    cuda = torch.cuda.is_available()
    cfg = cfg or (Config() if cuda and not quick else QUICK)
    work.mkdir(parents=True, exist_ok=True)
    from bench.common import MODELS_DIR

    model = build_llama(MODELS_DIR / "llama-1b-shape-random") if cuda else model_dir("tiny")
    res: dict[str, Any] = {"config": {k: str(v) for k, v in vars(cfg).items()}, "model": str(model), "cuda": cuda}
    for variant in ["peak"] + list(cfg.variants):
        out = work / f"{variant}.json"
        cmd = [python(), "-m", "bench.gpu", "--child", "--variant", variant, "--model", str(model), "--work",
               str(work), "--out", str(out), "--block-size", str(cfg.block_size), "--batch-size",
               str(cfg.batch_size), "--baseline-batch-size", str(cfg.baseline_batch_size), "--max-steps",
               str(cfg.max_steps), "--rows", str(cfg.rows)]
        if not cuda:  # CPU smoke: in this process (a child per variant would cost ~10 s of imports each)
            try:
                child(_parser().parse_args(cmd[3:]))
                res[variant] = json.loads(out.read_text())
            except Exception as exc:  # noqa: BLE001
                res[variant] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        r = run_child(cmd, work / f"{variant}.log", env=child_env(None), cwd=REPO, timeout=1800)
        res[variant] = json.loads(out.read_text()) if r.returncode == 0 and out.exists() else \
            {"error": f"exit {r.returncode}", "log_tail": r.tail(15)}
        res[variant]["peak_rss_mb"] = r.peak_rss_mb
        res[variant]["command"] = " ".join(cmd)
    broken = {v: res[v]["error"] for v in ["peak"] + list(cfg.variants) if "error" in res[v]}
    if broken and not cuda:  # the smoke test exists to catch exactly this
        raise RuntimeError(f"variants failed: {broken}")
    peak = res["peak"].get("peak_flops")
    base = res.get("trl_baseline", {})
    rows = []
    for v in cfg.variants:
        r = res[v]
        if "tokens_per_s" not in r:
            rows.append(f"{v} {'skipped: ' + r['skipped'] if 'skipped' in r else 'ERROR ' + r.get('error', '?')}")
            continue
        r["mfu"] = r["tokens_per_s"] * r["flops_per_token"] / peak if peak else None
        r["speedup_vs_baseline"] = ratio(r["tokens_per_s"], base.get("tokens_per_s", 0))
        vram = ""
        if cuda and "peak_vram_allocated_gb" in base:
            r["vram_vs_baseline"] = ratio(r["peak_vram_allocated_gb"], base["peak_vram_allocated_gb"])
            vram = f", VRAM {r['peak_vram_allocated_gb']:.1f} GB = {r['vram_vs_baseline']:.2f}x"
        rows.append(f"{v} {r['tokens_per_s']:.0f} tok/s = {r['speedup_vs_baseline']:.2f}x, MFU "
                    f"{100 * (r['mfu'] or 0):.1f}%{vram}")
    ok = None
    if cuda and not quick:
        lora = res.get("lora", {})
        winners = [v for v in cfg.variants if v != "trl_baseline" and "tokens_per_s" in res[v]
                   and res[v]["speedup_vs_baseline"] >= SPEED_TARGET
                   and res[v].get("vram_vs_baseline", 9) <= VRAM_TARGET]
        res["meets_speed_and_vram"] = winners
        ok = bool((lora.get("mfu") or 0) >= MFU_TARGET and winners)
        head = f"gpu ({res['peak'].get('device')}, bf16 matmul peak {peak / 1e12:.0f} TFLOP/s): "
    else:
        head = (f"gpu: no CUDA device - CPU smoke of the harness only, figures are not GPU results (fp32 matmul "
                f"peak {(peak or 0) / 1e9:.0f} GFLOP/s): ")
    line = (head + "; ".join(rows) + f"; targets MFU >= {100 * MFU_TARGET:.0f}% (LoRA bf16), >= {SPEED_TARGET}x "
            f"tokens/s at <= {VRAM_TARGET}x VRAM vs baseline{verdict(ok)}")
    return Result("gpu", line, res, ok)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", action="store_true")
    p.add_argument("--variant")
    p.add_argument("--model")
    p.add_argument("--work")
    p.add_argument("--out")
    p.add_argument("--block-size", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--baseline-batch-size", type=int, default=16)
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--rows", type=int, default=2449)
    p.add_argument("--quick", action="store_true")
    return p


def main() -> None:
    a = _parser().parse_args()
    if a.child:
        child(a)
        return
    result = run(new_run_dir("gpu"), quick=a.quick)
    print(result.line)
    print(json.dumps(result.figures, indent=2, default=str))


if __name__ == "__main__":
    main()
