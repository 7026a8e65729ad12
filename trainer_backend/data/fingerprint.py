"""The key of a prepared-data cache entry: a digest of everything that changes what preparation produces.

In it: the contents of the data files (SHA-256; a Hub split by the fingerprint `datasets` gives the downloaded
revision), the spec's data and lengths sections and the training settings preparation reads, the tokenizer
(its serialised vocabulary, rules and special tokens), the chat template text that trains, the library versions
that render and tokenise, and PIPELINE_VERSION. File paths are not in it: the same content under another name
reuses the entry (messages and the report name the files of the current run).
"""
from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from ..library_hooks import dataset_fingerprint
from ..spec import JobSpec
from .loading import SplitSource
from .rl_rows import reference_columns

# Bump whenever the pipeline's output (records, stats, layout) changes for the same inputs: old entries then miss.
PIPELINE_VERSION = 2  # 2: no EOS trained after a template's end-of-turn; tools, context columns, nested fields

_digests: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) -> digest, for this process only


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (remembered in this process while the file's size and mtime stay the same)."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo not in _digests:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        _digests[memo] = h.hexdigest()
    return _digests[memo]


def source_digest(source: Optional[SplitSource]) -> Any:
    if source is None:
        return None
    if source.hub_dataset is not None:
        return {"hub": source.hub_label, "fingerprint": dataset_fingerprint(source.hub_dataset)}
    return {"files": [[p.suffix.lower(), file_digest(p)] for p in source.files], "text_split": source.text_split}


def file_states(sources: list[Optional[SplitSource]]) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of every local file: a file that changes while it is prepared is not cached."""
    return [(str(p), (st := p.stat()).st_size, st.st_mtime_ns)
            for s in sources if s is not None for p in s.files]


def tokenizer_digest(tokenizer: Any) -> str:
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
        # The serialisation starts with the truncation/padding state, which calls change and which does not
        # change how we tokenise (we never truncate or pad there): digest from the added tokens on.
        cut = text.find('"added_tokens"')
        h.update(text[cut if cut > 0 else 0:].encode())
    else:  # slow tokenizers: their vocabulary and special tokens
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    state = {"special": {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
             "added": sorted(map(str, getattr(tokenizer, "added_tokens_decoder", {}).values())),
             "add_bos": getattr(tokenizer, "add_bos_token", None), "add_eos": getattr(tokenizer, "add_eos_token", None),
             "split_special": getattr(tokenizer, "split_special_tokens", None), "size": len(tokenizer),
             "fast": getattr(tokenizer, "is_fast", False)}  # its chat template: the key has the one that trains
    h.update(json.dumps(state, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _version(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def prepared_key(spec: JobSpec, train: SplitSource, valid: Optional[SplitSource], tokenizer_fp: str,
                 template: Optional[str]) -> str:
    data = spec.data.model_dump(mode="json")
    data.pop("path")        # the files' contents stand for it (below)
    data.pop("max_errors")  # only failed preparations report errors, and those are never cached
    if valid is not None and Path(str(spec.data.valid_split)).expanduser().is_file():
        data["valid_split"] = "<a file>"
    parts = {
        "pipeline": PIPELINE_VERSION,
        "sources": {"train": source_digest(train), "valid": source_digest(valid)},
        "data": data,
        "lengths": spec.lengths.model_dump(mode="json"),
        "training": {"trainer": spec.training.trainer, "completion_only_loss": spec.training.completion_only_loss,
                     "seed": spec.training.seed if spec.data.valid_split == "auto" else None},
        # grpo rows hold the reference values its rewards read, and prompts cut to leave room for a completion
        "grpo": {"columns": reference_columns(spec), "max_completion_length": spec.grpo.max_completion_length}
        if spec.training.trainer == "grpo" else None,
        "tokenizer": tokenizer_fp,
        "template": template,
        "libraries": {p: _version(p) for p in ("tokenizers", "transformers", "jinja2", "pyarrow")},
        "platform": os.name,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
