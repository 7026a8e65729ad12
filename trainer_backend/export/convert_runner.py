"""Run one of llama.cpp's own Python tools, unchanged, from the converter folder (see llama_cpp.py).

    python -m trainer_backend.export.convert_runner CONVERTER_DIR SCRIPT [ARGS...]

SCRIPT is convert_hf_to_gguf.py, convert_lora_to_gguf.py or a gguf-py script (gguf/scripts/...). The folder's own
gguf-py comes first on the path, so the converter writes with the gguf library of the llama.cpp the runtime was
built from. One addition: a BPE tokenizer whose pre-tokenizer hash the converter's table lacks is named from its
tokenizer.json when that states a split llama.cpp implements (pretokenizers.py), with a log line saying so.
"""
from __future__ import annotations

import logging
import runpy
import sys
from pathlib import Path

log = logging.getLogger("lora-studio-export")


def _name_unknown_pretokenizers() -> None:
    from conversion import base  # type: ignore[import-not-found]  # the converter's own package

    from .pretokenizers import pretokenizer_name

    original = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer):  # type: ignore[no-untyped-def]
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            name = pretokenizer_name(Path(self.dir_model) / "tokenizer.json")
            if name is None:
                raise
            log.warning("pre-tokenizer hash not in llama.cpp's table; tokenizer.json states the '%s' split, so the "
                        "GGUF says '%s' (the round-trip check compares every prompt's token ids)", name, name)
            return name

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre


def main(argv: list[str]) -> None:
    converter_dir, script, *args = argv
    folder = Path(converter_dir)
    sys.path[:0] = [str(folder / "gguf-py"), str(folder)]
    if script.startswith("convert_"):
        _name_unknown_pretokenizers()
        path = folder / script
    else:
        path = folder / "gguf-py" / script
    sys.argv = [str(path), *args]
    runpy.run_path(str(path), run_name="__main__")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:%(name)s:%(message)s")
    main(sys.argv[1:])
