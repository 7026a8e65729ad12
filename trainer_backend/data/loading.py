"""Read datasets from local files, folders or the Hub as a stream of rows that remember where they came from.

`open_split` resolves where a split's rows are (files, or a Hub split) without reading them; `SplitSource.rows`
then streams them one at a time, so a million-row file never sits in memory as Python objects. JSONL (the big
format in practice) and Parquet are read incrementally; CSV, JSON and TXT files are parsed from their whole text
(their quoting or nesting needs it) but still handed on row by row. `load_split` collects a stream into a
`RawSplit` for the places that want every row at once (the dataset preview).
"""
from __future__ import annotations

import csv
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from .issues import DataIssue, IssueCollector

DATA_EXTENSIONS = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt", ".md")
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "valid": ("valid", "validation", "val", "dev", "eval", "test"),
}
_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

Row = dict[str, Any]


@dataclass
class RawSplit:
    """Rows of one split plus, for each row, the file and 1-based row number users can look up."""
    name: str
    rows: list[Row] = field(default_factory=list)
    refs: list[tuple[str, int]] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return columns_of(self.rows[:200])


def columns_of(rows: list[Row]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


@dataclass
class ReadPosition:
    """How far a stream has got, for progress: bytes of the files behind it plus the fraction of the current one."""
    total_bytes: int = 0
    done_bytes: float = 0.0

    @property
    def fraction(self) -> float:
        return min(self.done_bytes / self.total_bytes, 1.0) if self.total_bytes else 0.0


@dataclass
class SplitSource:
    """Where one split's rows come from, resolved but not read: local files in reading order, or a Hub split."""
    name: str
    files: list[Path] = field(default_factory=list)
    text_split: str = "auto"
    hub_label: Optional[str] = None  # "repo[split]" for a Hub split
    hub_dataset: Any = None          # the loaded datasets.Dataset of a Hub split
    failed_files: set[int] = field(default_factory=set)  # files that turned out unreadable while streaming
    position: ReadPosition = field(default_factory=ReadPosition)

    @property
    def labels(self) -> list[str]:
        """How each source is named in messages and the report (index = the file index of a row's ref)."""
        return [self.hub_label] if self.hub_label else [str(p) for p in self.files]

    @property
    def total_bytes(self) -> int:
        if self.hub_dataset is not None:
            return len(self.hub_dataset)  # rows stand in for bytes: progress only needs a fraction
        return sum(p.stat().st_size for p in self.files)

    def rows(self, issues: IssueCollector) -> Iterator[tuple[Row, int, int]]:
        """(row, file index, 1-based row number), in order. Problems go to `issues` as they are met."""
        self.position = ReadPosition(self.total_bytes)
        if self.hub_dataset is not None:
            ds = self.hub_dataset
            for start in range(0, len(ds), 1000):
                batch = ds[start:start + 1000]
                for k, values in enumerate(zip(*batch.values()), start + 1):
                    self.position.done_bytes = k
                    yield dict(zip(batch, values)), 0, k
            return
        for index, path in enumerate(self.files):
            base = self.position.done_bytes
            size = path.stat().st_size
            for row, number, read in _file_rows(path, issues, self.text_split, self.failed_files, index):
                self.position.done_bytes = base + read * size
                yield row, index, number
            self.position.done_bytes = base + size


def _file_rows(path: Path, issues: IssueCollector, text_split: str, failed: set[int],
               index: int) -> Iterator[tuple[Row, int, float]]:
    """(row, row number, fraction of the file read) for one file."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from _stream_jsonl(path, issues, failed, index)
        return
    if suffix == ".parquet":
        yield from _stream_parquet(path, issues)
        return
    if suffix not in (".json", ".csv", ".tsv", ".txt", ".md"):
        issues.error(DataIssue(f"unsupported file type '{suffix}'", str(path),
                               fix=f"use one of {', '.join(DATA_EXTENSIONS)}"))
        return
    text = _decode(path, issues)
    if text is None:
        return
    if suffix == ".json":
        rows = _read_json(path, text, issues)
    elif suffix in (".csv", ".tsv"):
        rows = _read_csv(path, text, issues)
    else:
        rows = _read_txt(text, text_split)
    del text
    n = len(rows)
    for k, (row, number) in enumerate(rows, 1):
        yield row, number, k / n


def _utf8_error(path: Path, data: bytes, offset: int, line: int, exc: UnicodeDecodeError) -> DataIssue:
    if data[:2] in _UTF16_BOMS and offset == 0:  # Windows tools ("Unicode" in Notepad/Excel) save UTF-16
        return DataIssue("file is UTF-16 (it starts with a UTF-16 byte-order mark), not UTF-8", str(path), 1,
                         fix="re-save the file as UTF-8 (e.g. `iconv -f utf-16 -t utf-8 in > out`)")
    return DataIssue(f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {offset + exc.start})",
                     str(path), line, fix="re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in > out`)")


def _decode(path: Path, issues: IssueCollector) -> Optional[str]:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        issues.error(_utf8_error(path, data, 0, data[: exc.start].count(b"\n") + 1, exc))
        return None


def _stream_jsonl(path: Path, issues: IssueCollector, failed: set[int],
                  index: int) -> Iterator[tuple[Row, int, float]]:
    size = max(path.stat().st_size, 1)
    offset = 0
    # Binary lines split on b'\n' only: str.splitlines() also breaks at U+2028, U+0085, \x0c, ... which JSON
    # strings may hold raw, and would shift every later line number. UTF-8 never has 0x0A inside a character, so
    # decoding line by line finds exactly the bytes whole-file decoding would.
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            start = offset
            offset += len(raw)
            data = raw[3:] if lineno == 1 and raw.startswith(_BOM) else raw
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                # A file that is not UTF-8 yields no rows (those already read are retracted by the caller).
                issues.error(_utf8_error(path, data, start + len(raw) - len(data), lineno, exc))
                failed.add(index)
                return
            obj = _json_line(line, path, lineno, issues)
            if obj is not None:
                yield obj, lineno, offset / size


TOO_DEEP = "JSON nested thousands of levels deep: too deep to read"
TOO_DEEP_FIX = "a training row holds text, messages or a few levels of objects; check how the file was written"


def _json_line(line: str, path: Path, lineno: int, issues: IssueCollector) -> Optional[Row]:
    """One line of JSON Lines: the object, or None (blank, or a problem recorded)."""
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        issues.error(DataIssue(f"invalid JSON: {exc.msg} at character {exc.colno}", str(path), lineno,
                               fix="each line must be one complete JSON object"))
        return None
    except RecursionError:  # thousands of nested [ / {: Python's parser gives up (never an internal error)
        issues.error(DataIssue(TOO_DEEP, str(path), lineno, fix=TOO_DEEP_FIX))
        return None
    if not isinstance(obj, dict):
        issues.error(DataIssue(f"expected a JSON object, got {type(obj).__name__}", str(path), lineno,
                               fix="each line must be an object like {\"text\": \"...\"}"))
        return None
    return obj


def _jsonl_text(path: Path, text: str, issues: IssueCollector) -> list[tuple[Row, int]]:
    """JSON Lines saved with a .json name (already decoded)."""
    lines = ((_json_line(line, path, n, issues), n) for n, line in enumerate(text.split("\n"), 1))
    return [(obj, n) for obj, n in lines if obj is not None]


def _read_json(path: Path, text: str, issues: IssueCollector) -> list[tuple[Row, int]]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if "\n{" in text and text.lstrip().startswith("{"):  # JSON Lines saved with a .json name
            return _jsonl_text(path, text, issues)
        issues.error(DataIssue(f"invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", str(path),
                               exc.lineno, fix="fix the JSON syntax (or save one object per line as .jsonl)"))
        return []
    except RecursionError:
        issues.error(DataIssue(TOO_DEEP, str(path), fix=TOO_DEEP_FIX))
        return []
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
            return []
    if not isinstance(obj, list):
        issues.error(DataIssue(f"expected an array of objects, got {type(obj).__name__}", str(path),
                               fix="write [{\"col\": ...}, ...] or {\"col\": [...], ...}"))
        return []
    out = []
    for i, item in enumerate(obj, 1):
        if not isinstance(item, dict):
            issues.error(DataIssue(f"record {i} is a {type(item).__name__}, expected an object", str(path), i,
                                   fix="every element of the array must be an object like {\"text\": \"...\"}"))
            continue
        out.append((item, i))
    return out


def _read_csv(path: Path, text: str, issues: IssueCollector) -> list[tuple[Row, int]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    header_line = text.lstrip("\r\n").split("\n", 1)[0]
    if delimiter == "," and "," not in header_line:  # spreadsheet exports in many locales use ';' (or tabs)
        delimiter = next((d for d in (";", "\t", "|") if d in header_line), ",")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents in one cell are normal training data
    # strict: a quote that is never closed is an error, instead of silently swallowing the rest of the file.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    out: list[tuple[Row, int]] = []
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
            out.append(({k: (record[i] if i < len(record) else None) for i, k in enumerate(header)}, row_number))
    except csv.Error as exc:
        why = "a quoted cell is never closed (the file ends inside quotes)" if "end of data" in str(exc) else str(exc)
        issues.error(DataIssue(f"cannot parse CSV from this row on: {why}", str(path), row_number + 1,
                               fix='check the quotes in this row: a cell that contains quotes must be wrapped in '
                                   'quotes with every quote inside doubled ("say ""hi""")'))
    return out


def _stream_parquet(path: Path, issues: IssueCollector) -> Iterator[tuple[Row, int, float]]:
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
        total = max(reader.metadata.num_rows, 1)
        number = 0
        for batch in reader.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                number += 1
                yield row, number, number / total
    except Exception as exc:  # corrupt file: the arrow error says why
        issues.error(DataIssue(f"cannot read Parquet: {exc}", str(path)))


def _read_txt(text: str, mode: str) -> list[tuple[Row, int]]:
    if mode == "auto":
        mode = "paragraph" if re.search(r"\n\s*\n", text) else "file"
    if mode == "file":
        return [({"text": text.strip("\n")}, 1)] if text.strip() else []
    out: list[tuple[Row, int]] = []
    block_start = 1
    block: list[str] = []
    for lineno, line in enumerate(text.split("\n"), 1):  # '\n' only, so row numbers are editor lines
        line = line.removesuffix("\r")
        if line.strip():
            if not block:
                block_start = lineno
            block.append(line)
        elif block:
            out.append(({"text": "\n".join(block)}, block_start))
            block = []
    if block:
        out.append(({"text": "\n".join(block)}, block_start))
    return out


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


def open_split(path: str, split: str, issues: IssueCollector, config_name: Optional[str] = None,
               text_split: str = "auto") -> Optional[SplitSource]:
    """Find one split's files (or load its Hub split). Returns None (with an error recorded) when it cannot."""
    if (Path(split).suffix.lower() in DATA_EXTENSIONS or "/" in split or "\\" in split) \
            and not Path(split).expanduser().exists():  # meant as a path, not a split name
        issues.error(DataIssue(f"split '{split}' looks like a file path, but there is no such file", split,
                               fix=f"check the path (relative paths are from {Path.cwd()}), or give a split name "
                                   f"such as validation"))
        return None
    parts = [p.strip() for p in path.split(",") if p.strip()]
    local = [Path(p).expanduser() for p in parts]
    if all(p.exists() for p in local):
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
        return SplitSource(split, files, text_split)
    if len(local) > 1 or looks_local(path):
        missing = [str(p) for p in local if not p.exists()]
        issues.error(DataIssue("file or folder not found", ", ".join(missing),
                               fix="check the path (relative paths are from the current directory)"))
        return None
    ds = _load_hub_split(path, split, config_name, issues)
    return None if ds is None else SplitSource(split, hub_label=f"{path}[{split}]", hub_dataset=ds)


def load_split(path: str, split: str, issues: IssueCollector, config_name: Optional[str] = None,
               text_split: str = "auto") -> Optional[RawSplit]:
    """Load every row of one split into memory. Returns None (with an error recorded) when it cannot be found."""
    source = open_split(path, split, issues, config_name, text_split)
    if source is None:
        return None
    out = RawSplit(split)
    labels = source.labels
    for row, index, number in source.rows(issues):
        out.rows.append(row)
        out.refs.append((labels[index], number))
    if source.failed_files:  # a file that is not UTF-8 yields no rows at all
        bad = {labels[i] for i in source.failed_files}
        keep = [k for k, ref in enumerate(out.refs) if ref[0] not in bad]
        out.rows, out.refs = [out.rows[k] for k in keep], [out.refs[k] for k in keep]
    return out


def _load_hub_split(repo_id: str, split: str, config_name: Optional[str], issues: IssueCollector) -> Any:
    import datasets

    from ..access import AccessDenied, check_hub_read, hub_token

    token = hub_token()  # in an app event: the caller's own; elsewhere this process's (None: the library's)
    try:
        check_hub_read(repo_id, "dataset", None, token)  # datasets falls back to a cached copy on a 404
    except AccessDenied as exc:
        issues.error(DataIssue(str(exc), repo_id, fix="check the id and that your account may read it"))
        return None
    try:
        return datasets.load_dataset(repo_id, config_name, split=split, **({} if token is None else {"token": token}))
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
