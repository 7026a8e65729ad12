"""Write the export's Ollama Modelfile(s) and check the TEMPLATE against the training rendering.

Modelfile: FROM the smallest merged GGUF that was made (q4_K_M, else q8_0, else bf16/f16); Modelfile.adapter:
FROM the base's f16 GGUF + ADAPTER the LoRA GGUF (the only one when no merged GGUF was made). The check renders
every held-out prompt through the TEMPLATE's turn pieces (ollama.render_go_pieces: what Ollama's Go template
produces) and compares the text with the one training rendered.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..job_files import MODELFILE
from .ollama import TurnFormat, TurnFormatError, modelfile, read_turn_format, render_go_pieces, stop_tokens
from .reference import Reference
from .state import FileEntry

MERGED_PREFERENCE = ("q4_K_M", "q8_0", "bf16", "f16")  # what Ollama users run: the smallest file made
ADAPTER_MODELFILE = f"{MODELFILE}.adapter"


def write_modelfiles(out: Path, made: list[tuple[FileEntry, Path, Optional[Path]]], tokenizer: Any, meta: Any,
                     reference: Reference, system_prompt: Optional[str]) -> dict[str, Any]:
    """Write Modelfile (and Modelfile.adapter) into `out`; returns what export.json records about them."""
    template = tokenizer.chat_template if meta.chat_template != "none" else None
    fmt: Optional[TurnFormat] = None
    reason: Optional[str] = "the job trained without a chat template"
    if template:
        try:
            fmt, reason = read_turn_format(tokenizer, template), None
        except TurnFormatError as err:
            reason = str(err)
    stops = stop_tokens(fmt, tokenizer, meta.end_of_turn)
    merged = {entry.format: path for entry, path, lora in made if lora is None}
    lora = next(((path, lora) for entry, path, lora in made if lora is not None), None)
    written = []
    chosen = next((merged[f] for f in MERGED_PREFERENCE if f in merged), None)
    if chosen is not None:
        (out / MODELFILE).write_text(modelfile(f"./{chosen.name}", fmt, stops, system_prompt,
                                               no_template_reason=reason), encoding="utf-8")
        written.append(MODELFILE)
    if lora is not None:
        name = ADAPTER_MODELFILE if chosen is not None else MODELFILE
        (out / name).write_text(modelfile(f"./{lora[0].name}", fmt, stops, system_prompt, f"./{lora[1].name}",
                                          no_template_reason=reason), encoding="utf-8")
        written.append(name)
    if not written:
        raise ValueError("a Modelfile needs a GGUF to point at: add f16, q8_0, q4_K_M or lora_gguf to the formats")
    prompts = [p for p in reference.prompts if not p.add_special]
    identical = 0
    if fmt is not None:
        for prompt in prompts:  # the held-out prompts carry the training system prompt where training added one
            identical += render_go_pieces(fmt, prompt.messages) == prompt.text
    return {"files": written, "from": chosen.name if chosen is not None else None, "template": fmt is not None,
            "reason": reason, "stops": stops, "system": bool(system_prompt or (fmt and fmt.default_system)),
            "prompts": len(prompts), "identical": identical}
