"""LoRA Studio Space entry point.

The browser UI (Train / Jobs / Chat tabs) is being built; today training runs from the command line:
`python -m trainer_backend train spec.yaml`. This page says so and shows the spec's reference.
"""
from __future__ import annotations

import os

import gradio as gr

from trainer_backend.spec import JobSpec

INTRO = """# LoRA Studio
Fine-tune language models with LoRA / QLoRA. **Training is available from the command line today**;
the browser UI is coming next.

```bash
python -m trainer_backend validate spec.yaml   # check every row before any GPU time is spent
python -m trainer_backend doctor spec.yaml     # token lengths, truncation, the exact training string
python -m trainer_backend train spec.yaml      # LoRA/QLoRA SFT or generic causal LM
```
"""


def spec_reference() -> str:
    """Every job-spec key with its default and help text, generated from the JobSpec model."""
    lines = ["| key | default | description |", "|---|---|---|"]
    for section, field in JobSpec.model_fields.items():
        model = field.annotation if isinstance(field.annotation, type) else None
        if model is not None and hasattr(model, "model_fields"):
            for name, sub in model.model_fields.items():
                default = "(required)" if sub.is_required() else sub.get_default(call_default_factory=True)
                lines.append(f"| `{section}.{name}` | `{default}` | {sub.description or ''} |")
        else:
            lines.append(f"| `{section}` | `{field.get_default()}` | {field.description or ''} |")
    return "\n".join(lines)


def build_app() -> gr.Blocks:
    with gr.Blocks(title="LoRA Studio") as demo:
        gr.Markdown(INTRO)
        with gr.Accordion("Job spec reference", open=False):
            gr.Markdown(spec_reference())
    return demo


if __name__ == "__main__":
    build_app().launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                       server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
