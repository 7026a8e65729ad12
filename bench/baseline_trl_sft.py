"""A hand-written TRL LoRA SFT script: the baseline LoRA Studio is measured against (bench/overhead.py).

Deliberately independent of LoRA Studio: plain `datasets` + `SFTTrainer(model=path, ...)` + `LoraConfig`, the
way the TRL docs write it. The only thing taken from LoRA Studio is the ChatML template *text* (so both sides
render byte-identical training strings; it carries {% generation %} markers, which `assistant_only_loss` needs).

Measured the same way as `python -m trainer_backend train`: tokens/s = Trainer's `num_input_tokens_seen`
(include_num_input_tokens_seen="non_padding": every non-padding input token of every micro-batch fed to the
model) / Trainer's `train_runtime` (the training loop only: no imports, model load, data prep or adapter save).

    python bench/baseline_trl_sft.py --model DIR --data chat.jsonl --out result.json [--max-steps 20 ...]
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="JSONL with a `messages` column")
    p.add_argument("--out", required=True, help="write the result JSON here")
    p.add_argument("--output-dir", default=None)
    p.add_argument("--progress", default=None, help="append one JSON line per log: time, tokens_seen")
    p.add_argument("--max-rows", type=int, default=None)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--grad-accum", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=-1, help="-1: train --epochs epochs")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup-ratio", type=float, default=0.03)
    p.add_argument("--scheduler", default="cosine")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=int, default=32)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--logging-steps", type=int, default=5)
    p.add_argument("--no-gradient-checkpointing", action="store_true")
    args = p.parse_args()

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from trainer_backend.data.templates import SHIPPED_TEMPLATES

    rows = [json.loads(line) for line in Path(args.data).read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.max_rows:
        rows = rows[: args.max_rows]
    dataset = Dataset.from_list([{"messages": r["messages"]} for r in rows])

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.chat_template = SHIPPED_TEMPLATES["chatml"].source
    tokenizer.padding_side = "right"

    class Throughput(TrainerCallback):  # (time, tokens) at every log, for a steady-state figure
        def __init__(self) -> None:
            self.points: list[tuple[float, int]] = []

        def on_log(self, a, state, control, logs=None, **kw):  # noqa: ANN001
            if logs and "loss" in logs:
                self.points.append((time.time(), state.num_input_tokens_seen))
                if args.progress:
                    with open(args.progress, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps({"event": "log", "time": round(time.time(), 3), "step": state.global_step,
                                             "tokens_seen": state.num_input_tokens_seen}) + "\n")

    throughput = Throughput()
    config = SFTConfig(
        output_dir=args.output_dir or str(Path(args.out).with_suffix("")) + "-trl-out",
        max_steps=args.max_steps, num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, learning_rate=args.lr, lr_scheduler_type=args.scheduler,
        warmup_steps=args.warmup_ratio, optim="adamw_torch", weight_decay=0.0, max_grad_norm=1.0,
        seed=args.seed, data_seed=args.seed, bf16=False, fp16=False, use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=not args.no_gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        max_length=args.max_length, packing=True, packing_strategy="bfd", assistant_only_loss=True,
        model_init_kwargs={"dtype": torch.float32, "attn_implementation": "sdpa"},
        logging_steps=args.logging_steps, logging_first_step=True, save_strategy="no", eval_strategy="no",
        report_to="none", include_num_input_tokens_seen="non_padding", disable_tqdm=True,
        dataloader_num_workers=0,
    )
    peft_config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                             target_modules="all-linear", bias="none", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=args.model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[throughput])
    output = trainer.train()
    metrics = dict(output.metrics)
    result = {
        "side": "trl", "train_runtime": metrics["train_runtime"],
        "num_input_tokens_seen": trainer.state.num_input_tokens_seen, "global_step": trainer.state.global_step,
        "train_loss": metrics.get("train_loss"), "train_rows": len(trainer.train_dataset),
        "log_points": throughput.points, "peak_rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
