"""The one home of a job folder's layout: every file and folder name a job writes or reads.

It sits at the bottom of the package (imports nothing of ours), so any layer can use it.
"""
from __future__ import annotations

SPEC_FILE = "spec.yaml"              # the validated job spec (secrets dropped)
REPORT_FILE = "data_report.json"     # the dataset report of the run
EVENTS_FILE = "events.jsonl"         # machine-readable record of the run (progress, metrics, result)
LOG_FILE = "train.log"               # what a person reads: LoRA Studio's own lines and real warnings
DEBUG_LOG_FILE = "debug.log"         # library noise kept for debugging, out of the person's way
EVAL_FILE = "evaluation.json"        # base vs fine-tuned results from Evaluate
ADAPTER_DIR = "adapter"              # the trained adapter (or full model) + tokenizer
META_FILE = "lora_studio.json"       # inside ADAPTER_DIR: how the adapter was trained (base, template, ...)
ADAPTER_ARCHIVE = "adapter.zip"    # ADAPTER_DIR zipped for download (made on demand, outside the job folder)
CHECKPOINT_PREFIX = "checkpoint-"    # trainer checkpoints: checkpoint-<step>

# Set by the job supervisor for the training process: where that process writes the person's log (LOG_FILE).
# Its raw stdout/stderr go to DEBUG_LOG_FILE.
LOG_FILE_ENV = "LORA_STUDIO_LOG_FILE"
