"""Read datasets from local files, folders or the Hub into rows that remember where they came from."""
from __future__ import annotations

import csv
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .issues import DataIssue, IssueCollector

DATA_EXTENSIONS = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt", ".md")
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "valid": ("valid", "validation", "val", "dev", "eval", "test"),
}


@dataclass
class RawSplit:
    """Rows of one split plus, for each row, the file and 1-based row number users can look up."""
    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    refs: list[tuple[str, int]] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows[:200]:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def extend(self, other: "RawSplit") -> None:
        self.rows.extend(other.rows)
        self.refs.extend(other.refs)

    def head(self, n: int) -> "RawSplit":
        return RawSplit(self.name, self.rows[:n], self.refs[:n])


def _decode(path: Path, issues: IssueCollector) -> Optional[str]:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # Windows tools ("Unicode" in Notepad/Excel) save UTF-16
            issues.error(DataIssue("file is UTF-16 (it starts with a UTF-16 byte-order mark), not UTF-8", str(path),
                                   1, fix="re-save the file as UTF-8 (e.g. `iconv -f utf-16 -t utf-8 in > out`)"))
            return None
        line = data[: exc.start].count(b"\n") + 1
        issues.error(DataIssue(f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                               str(path), line,
                               fix="re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in > out`)"))
        return None


def _read_jsonl(path: Path, text: str, issues: IssueCollector) -> RawSplit:
    split = RawSplit("")
    # Split on '\n' only: str.splitlines() also breaks at U+2028, U+0085, \x0c, ... which JSON strings may hold
    # raw, and would shift every later line number.
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            issues.error(DataIssue(f"invalid JSON: {exc.msg} at character {exc.colno}", str(path), lineno,
                                   fix="each line must be one complete JSON object"))
            continue
        if not isinstance(obj, dict):
            issues.error(DataIssue(f"expected a JSON object, got {type(obj).__name__}", str(path), lineno,
                                   fix="each line must be an object like {\"text\": \"...\"}"))
            continue
        split.rows.append(obj)
        split.refs.append((str(path), lineno))
    return split


def _read_json(path: Path, text: str, issues: IssueCollector) -> RawSplit:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if "\n{" in text and text.lstrip().startswith("{"):  # JSON Lines saved with a .json name
            return _read_jsonl(path, text, issues)
        issues.error(DataIssue(f"invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", str(path),
                               exc.lineno, fix="fix the JSON syntax (or save one object per line as .jsonl)"))
        return RawSplit("")
    if isinstance(obj, dict):
        list_keys = [k for k, v in obj.items() if isinstance(v, list)]
        if len(list_keys) == 1 and all(isinstance(x, dict) for x in obj[list_keys[0]]):
            obj = obj[list_keys[0]]  # {"data": [ {...}, ... ]}
        elif list_keys and len(list_keys) == len(obj) and len({len(obj[k]) for k in list_keys}) == 1:
            n = len(obj[list_keys[0]])  # object of equal-length lists (columnar)
            obj = [{k: obj[k][i] for k in list_keys} for i in range(n)]
        else:
            issues.error(DataIssue("expected an array of objects or an object of equal-length lists", str(path),
                                   fix="write [{\"col\": ...}, ...] or {\"col\": [...], ...}"))
            return RawSplit("")
    if not isinstance(obj, list):
        issues.error(DataIssue(f"expected an array of objects, got {type(obj).__name__}", str(path),
                               fix="write [{\"col\": ...}, ...] or {\"col\": [...], ...}"))
        return RawSplit("")
    split = RawSplit("")
    for i, item in enumerate(obj, 1):
        if not isinstance(item, dict):
            issues.error(DataIssue(f"record {i} is a {type(item).__name__}, expected an object", str(path), i,
                                   fix="every element of the array must be an object like {\"text\": \"...\"}"))
            continue
        split.rows.append(item)
        split.refs.append((str(path), i))
    return split


def _read_csv(path: Path, text: str, issues: IssueCollector) -> RawSplit:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    header_line = text.lstrip("\r\n").split("\n", 1)[0]
    if delimiter == "," and "," not in header_line:  # spreadsheet exports in many locales use ';' (or tabs)
        delimiter = next((d for d in (";", "\t", "|") if d in header_line), ",")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents in one cell are normal training data
    # strict: a quote that is never closed is an error, instead of silently swallowing the rest of the file.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    split = RawSplit("")
    header: Optional[list[str]] = None
    # Rows are numbered like a spreadsheet shows them: one per record (a quoted cell may span several lines),
    # the header is row 1, blank lines count. Rows we reject still count, so later numbers stay right.
    row_number = 0
    try:
        for record in reader:
            row_number += 1
            if not record:
                continue  # blank line
            if header is None:
                header = record
                continue
            if len(record) > len(header):
                issues.error(DataIssue(f"row has {len(record)} fields but the header has {len(header)}", str(path),
                                       row_number, fix="quote cells that contain the delimiter (\"a, b\"), or "
                                                       "add the missing column names to the header"))
                continue
            split.rows.append({k: (record[i] if i < len(record) else None) for i, k in enumerate(header)})
            split.refs.append((str(path), row_number))
    except csv.Error as exc:
        why = "a quoted cell is never closed (the file ends inside quotes)" if "end of data" in str(exc) else str(exc)
        issues.error(DataIssue(f"cannot parse CSV from this row on: {why}", str(path), row_number + 1,
                               fix='check the quotes in this row: a cell that contains quotes must be wrapped in '
                                   'quotes with every quote inside doubled ("say ""hi""")'))
    return split


def _read_parquet(path: Path, issues: IssueCollector) -> RawSplit:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # corrupt file: the arrow error says why
        issues.error(DataIssue(f"cannot read Parquet: {exc}", str(path)))
        return RawSplit("")
    return RawSplit("", rows, [(str(path), i) for i in range(1, len(rows) + 1)])


def _read_txt(path: Path, text: str, mode: str) -> RawSplit:
    if mode == "auto":
        mode = "paragraph" if re.search(r"\n\s*\n", text) else "file"
    split = RawSplit("")
    if mode == "file":
        if text.strip():
            split.rows.append({"text": text.strip("\n")})
            split.refs.append((str(path), 1))
        return split
    lineno, block_start, block = 0, 1, []
    for lineno, line in enumerate(text.split("\n"), 1):  # '\n' only, so row numbers are editor lines
        line = line.removesuffix("\r")
        if line.strip():
            if not block:
                block_start = lineno
            block.append(line)
        elif block:
            split.rows.append({"text": "\n".join(block)})
            split.refs.append((str(path), block_start))
            block = []
    if block:
        split.rows.append({"text": "\n".join(block)})
        split.refs.append((str(path), block_start))
    return split


def read_file(path: Path, issues: IssueCollector, text_split: str = "auto") -> RawSplit:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path, issues)
    text = _decode(path, issues)
    if text is None:
        return RawSplit("")
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path, text, issues)
    if suffix == ".json":
        return _read_json(path, text, issues)
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, text, issues)
    if suffix in (".txt", ".md"):
        return _read_txt(path, text, text_split)
    issues.error(DataIssue(f"unsupported file type '{suffix}'", str(path),
                           fix=f"use one of {', '.join(DATA_EXTENSIONS)}"))
    return RawSplit("")


def _split_files(folder: Path, split: str) -> list[Path]:
    """Files in `folder` that hold `split`: train.jsonl, train-00000.parquet, validation.csv, ..."""
    candidates = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix.lower() in DATA_EXTENSIONS]

    def named(n: str) -> list[Path]:
        return [p for p in candidates if re.fullmatch(rf"{re.escape(n)}([-_.].*)?", p.stem, re.I)]

    # The exact name first; otherwise the first alias that has files (so 'validation' never also pulls in test.*).
    aliases = next((names for names in SPLIT_ALIASES.values() if split.lower() in names), ())
    files = next((found for n in (split, *aliases) if (found := named(n))), [])
    if not files and split in SPLIT_ALIASES["train"]:
        everything = [p for p in candidates if p.name.lower() not in ("readme.md",)]
        if len(everything) == 1:
            files = everything
    return files


def looks_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or Path(path).suffix.lower() in DATA_EXTENSIONS or "," in path \
        or path.count("/") > 1 or "\\" in path


def load_split(path: str, split: str, issues: IssueCollector, config_name: Optional[str] = None,
               text_split: str = "auto") -> Optional[RawSplit]:
    """Load one split. Returns None (with an error recorded) when it cannot be found."""
    if (Path(split).suffix.lower() in DATA_EXTENSIONS or "/" in split or "\\" in split) \
            and not Path(split).expanduser().exists():  # meant as a path, not a split name
        issues.error(DataIssue(f"split '{split}' looks like a file path, but there is no such file", split,
                               fix=f"check the path (relative paths are from {Path.cwd()}), or give a split name "
                                   f"such as validation"))
        return None
    parts = [p.strip() for p in path.split(",") if p.strip()]
    local = [Path(p).expanduser() for p in parts]
    if all(p.exists() for p in local):
        out = RawSplit(split)
        if len(local) == 1 and local[0].is_dir():
            files = _split_files(local[0], split)
            if not files:
                available = sorted({p.name for p in local[0].iterdir() if p.suffix.lower() in DATA_EXTENSIONS})
                issues.error(DataIssue(f"no files for split '{split}' in folder (found: {available or 'nothing'})",
                                       str(local[0]), fix=f"name the file {split}.jsonl / {split}.csv / ..."))
                return None
        else:
            files = local
            if split not in SPLIT_ALIASES["train"]:
                issues.error(DataIssue(f"a single file has no split named '{split}'", path,
                                       fix="use valid_split: auto, a path to a validation file, or a folder "
                                           "with train.* and valid.* files"))
                return None
        for f in files:
            out.extend(read_file(f, issues, text_split))
        return out
    if len(local) > 1 or looks_local(path):
        missing = [str(p) for p in local if not p.exists()]
        issues.error(DataIssue("file or folder not found", ", ".join(missing),
                               fix="check the path (relative paths are from the current directory)"))
        return None
    return _load_hub_split(path, split, config_name, issues)


def _load_hub_split(repo_id: str, split: str, config_name: Optional[str], issues: IssueCollector) -> Optional[RawSplit]:
    import datasets

    try:
        ds = datasets.load_dataset(repo_id, config_name, split=split)
    except ValueError as exc:
        if "split" in str(exc).lower():
            issues.error(DataIssue(f"Hub dataset has no split '{split}': {exc}", repo_id,
                                   fix="pick one of the dataset's splits"))
        else:
            issues.error(DataIssue(f"cannot load Hub dataset: {exc}", repo_id))
        return None
    except Exception as exc:  # network, gated repo, missing repo: say which, don't crash
        issues.error(DataIssue(f"no local file or folder '{repo_id}', and cannot load it as a Hub dataset: "
                               f"{type(exc).__name__}: {exc}", repo_id,
                               fix=f"for a local path, check it (relative paths are from {Path.cwd()}); for a Hub "
                                   "dataset, check the id, your access (gated datasets need a token) and the "
                                   "network"))
        return None
    rows = ds.to_list()
    label = f"{repo_id}[{split}]"
    return RawSplit(split, rows, [(label, i) for i in range(1, len(rows) + 1)])
