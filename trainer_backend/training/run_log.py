"""A training log a person can read: LoRA Studio's own lines and warnings that concern the run, nothing else.

A training process prints more than its own lines: libraries announce optional kernels they could not load,
deprecations meant for library developers, and progress bars drawn with carriage returns. In a job the
supervisor sends the process's raw stdout/stderr to the job's debug.log, and names the person's log (train.log)
in LORA_STUDIO_LOG_FILE; `install()` then copies every line written through Python's sys.stdout/sys.stderr
into train.log unless it is known noise. Run in a terminal (no job), the noise is simply not shown.
Tracebacks and warnings that are not on the noise list stay visible in both cases.

No torch/transformers import here: `install()` must run before they are imported, so that the handlers they
create at import already write through the filter.
"""
from __future__ import annotations

import io
import os
import re
import sys
import warnings
from pathlib import Path
from typing import IO, Optional

from ..job_files import LOG_FILE_ENV

LIBRARIES = ("transformers", "trl", "peft", "datasets", "accelerate", "torch", "bitsandbytes", "tokenizers")

NOISE = re.compile("|".join([
    r"kernels-community",                           # bitsandbytes: optional hub kernels not installed
    r"gemm_4bit_forward",
    r"mtime may not be reliable on this filesystem",  # transformers' checkpoint rotation on tmpfs/overlay
    r"\b(?:Deprecation|PendingDeprecation|Future)Warning\b",
    r"^\s*warnings\.warn\(",                        # the source line Python prints under a warning
    r"\d+%\|",                                      # tqdm bars: " 45%|████▌     | 9/20"
    r"[\u2580-\u259f]",                             # block characters tqdm draws with
]))


_LINE_END = re.compile(r"(\r\n?|\n)")


def is_noise(line: str) -> bool:
    return bool(NOISE.search(line))


class FilteredTee(io.TextIOBase):
    """Writes everything to `raw` (the debug log, or the terminal) and each complete line that is not noise to
    `person` (train.log). In terminal mode `raw` is None and `person` is the terminal."""

    def __init__(self, raw: Optional[IO[str]], person: IO[str]):
        self.raw, self.person, self._partial = raw, person, ""

    def write(self, text: str) -> int:
        if self.raw is not None:
            self.raw.write(text)
        # A carriage return ends a redrawn line (a progress bar): that piece is dropped, what follows is kept.
        *pieces, self._partial = _LINE_END.split(self._partial + text)
        kept = [line for line, end in zip(pieces[::2], pieces[1::2])
                if end != "\r" and line.strip() and not is_noise(line)]
        if kept:
            self.person.write("\n".join(kept) + "\n")
        return len(text)

    def flush(self) -> None:
        if self.raw is not None:
            self.raw.flush()
        self.person.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:  # for libraries that write to the descriptor itself: the raw stream
        return (self.raw or self.person).fileno()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """One line per warning, with where it came from; developer warnings are marked so the filter drops them."""
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    library = next((p for p in Path(filename).parts if p in LIBRARIES), None)
    print(f"warning: {category.__name__}: {text}" + (f" ({library})" if library else ""), file=file or sys.stderr)


def install() -> Optional[Path]:
    """Route this process's output as described above. Returns the person's log file in job mode."""
    # Progress bars are for terminals; in files they are noise (and events.jsonl already has the progress).
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    warnings.showwarning = _show_warning
    target = os.environ.get(LOG_FILE_ENV)
    if target and os.environ.get("RANK", "0") == "0":  # one copy of each line, from the first rank
        person = open(target, "a", encoding="utf-8", buffering=1)  # line-buffered: the Jobs tab tails it live
        sys.stdout = FilteredTee(sys.stdout, person)
        sys.stderr = FilteredTee(sys.stderr, person)
        return Path(target)
    sys.stderr = FilteredTee(None, sys.stderr)
    return None
