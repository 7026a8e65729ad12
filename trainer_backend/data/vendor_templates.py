"""A tokenizer's own (vendor) chat template: which Jinja text trains, and how messages must be shaped for it.

Vendor templates rarely mark assistant output with {% generation %}, and several render earlier turns differently
once later turns exist (Qwen3 drops past reasoning, Phi-3.5 and DeepSeek-V3 change separators), so growing-prefix
rendering cannot find the answers. TRL ships, next to the originals it recognises, training variants
(`trl/chat_templates/<name>_training.jinja`): the same rendering made prefix-preserving, with the markers. When the
tokenizer's template is one of those originals, its training variant trains and is saved with the adapter, so chat
and downstream `apply_chat_template` render exactly what training rendered.

The TRL files are read from the installed package without importing trl (which would pull in torch), so a TRL
upgrade that adds templates is picked up as is.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Optional, cast

TemplateOrigin = Literal["shipped", "tokenizer", "trl_training"]
TRAINING_SUFFIX = "_training"


@dataclass(frozen=True)
class TemplateChoice:
    """The chat template that trains (and is saved with the adapter), and where it came from."""
    source: str
    origin: TemplateOrigin
    name: Optional[str] = None  # shipped template name, or the TRL template the tokenizer's one matched

    def describe(self) -> str:
        """One line for the dataset report."""
        if self.origin == "shipped":
            return f"shipped template '{self.name}'"
        if self.origin == "trl_training":
            return (f"TRL training variant {self.name}{TRAINING_SUFFIX}.jinja of the tokenizer's own {self.name} "
                    "template (same rendering, prefix-preserving, assistant output marked)")
        if self.name:
            return f"the tokenizer's own template (TRL's {self.name}; used as is)"
        return "the tokenizer's own template"


def trl_templates_dir() -> Optional[Path]:
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "chat_templates"
    return folder if folder.is_dir() else None


@lru_cache(maxsize=1)
def trl_vendor_templates() -> dict[str, str]:
    """name -> Jinja text of every original (non-training) template the installed TRL ships."""
    folder = trl_templates_dir()
    if folder is None:
        return {}
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.jinja"))
            if not p.stem.endswith(TRAINING_SUFFIX)}


def trl_training_variant(name: str) -> Optional[str]:
    folder = trl_templates_dir()
    path = folder / f"{name}{TRAINING_SUFFIX}.jinja" if folder else None
    return path.read_text(encoding="utf-8") if path is not None and path.is_file() else None


def trl_template_name(source: str) -> Optional[str]:
    """Which TRL-known vendor template `source` is (exact text, as TRL itself compares), if any."""
    return next((name for name, text in trl_vendor_templates().items() if text == source), None)


def own_template(tokenizer: Any) -> Optional[str]:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named variants: 'default' is the one chat uses
        template = template.get("default")
    return template or None


def choose_own_template(tokenizer: Any) -> Optional[TemplateChoice]:
    """The training template for the tokenizer's own chat template: TRL's training variant when there is one."""
    source = own_template(tokenizer)
    if source is None:
        return None
    name = trl_template_name(source)
    variant = trl_training_variant(name) if name else None
    if variant is not None:
        return TemplateChoice(variant, "trl_training", name)
    return TemplateChoice(source, "tokenizer", name)


# ---- message shape ----------------------------------------------------------------------------------

_PROBE = "zq1probe"


@lru_cache(maxsize=64)
def wants_content_blocks(template: str) -> bool:
    """True for templates (VLM ones: Idefics3, SmolVLM, Llava-Next...) that read `content` only as a list of
    {"type": "text", "text": ...} blocks: given a plain string they silently render nothing, or fail."""
    from transformers.utils.chat_template_utils import render_jinja_template

    def renders_probe(content: Any) -> bool:
        try:  # annotated `-> str` in transformers, it returns (rendered chats, generation indices)
            out, _ = cast("tuple[list[str], Any]", render_jinja_template(
                [[{"role": "user", "content": content}]], chat_template=template, bos_token="", eos_token=""))
        except Exception:  # noqa: BLE001 - a template that rejects this shape: the other one is tried
            return False
        return _PROBE in out[0]
    return not renders_probe(_PROBE) and renders_probe([{"type": "text", "text": _PROBE}])


def shape_messages(template: str, messages: list[dict]) -> list[dict]:
    """Messages in the shape the template reads (text content as blocks where it needs them)."""
    if not wants_content_blocks(template):
        return messages
    return [{**m, "content": [{"type": "text", "text": m["content"]}]} if isinstance(m.get("content"), str) else m
            for m in messages]
