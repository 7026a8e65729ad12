"""Did it learn, and what did it cost elsewhere? The evaluation report of a trained job.

heldout.py: base vs fine-tuned on the job's held-out rows (loss, perplexity, exact match, ROUGE-L, function-call
accuracy via tools.py, GRPO rewards), with confidence intervals (stats.py). harness.py: general-ability tasks
through lm-evaluation-harness, base vs adapter with the harness's own PEFT support. forgetting.py: the verdict
that sets the task gain against the change on the general tasks. judge.py: an optional judge's pairwise win
rate. record.py: evaluation.json. run.py: the report's steps within a time budget, in the job's process after
training or in a background process started from the app or the CLI.
"""
# Only the light metrics here: importing the package (the Jobs tab does) must not load the model-loading layers
# (inference.py builds its model cache from the settings at import). evaluate() is in heldout.py.
from .metrics import EvalReport, exact_match, failure_kind, metrics_table, rouge_l  # noqa: F401
