"""Data problems that name the file, row and column, and say how to fix them.

Every problem is kept row by row (DataError.issues, up to data.max_errors) for scripts; people read the summary
(DataError.lines): one line per distinct problem with how many rows it affects and the first few row numbers.
Problems past the limit still count towards their line (Overflow), so a column missing from 4,000 rows is one
line saying 4,000, not 20 lines and "... and 3,980 more".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

ROWS_SHOWN = 3      # row numbers named in a summary line ("row 3, 7, 12 and 17 more")
MAX_GROUPS = 200    # distinct problems counted past the limit; more only add to "... and N more"


@dataclass
class DataIssue:
    message: str
    file: Optional[str] = None
    row: Optional[int] = None  # 1-based: the line of a JSONL/TXT file, the record of a CSV/JSON/Parquet file
    column: Optional[str] = None
    fix: Optional[str] = None
    severity: str = "error"

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column '{self.column}'")
        text = (", ".join(where) + ": " if where else "") + self.message
        return text + (f" — fix: {self.fix}" if self.fix else "")

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @property
    def key(self) -> tuple:
        """What makes two rows' problems the same problem: everything but the row."""
        return (self.severity, self.file, self.column, self.message, self.fix)


@dataclass
class _Group:
    issue: DataIssue              # the first row's
    count: int = 0
    rows: list[int] = field(default_factory=list)  # the first ROWS_SHOWN row numbers

    def add(self, count: int, rows: list[int]) -> None:
        self.count += count
        self.rows += rows[: max(0, ROWS_SHOWN - len(self.rows))]


@dataclass
class Overflow:
    """Problems past the kept list, grouped by DataIssue.key (picklable: workers send theirs back)."""
    groups: dict[tuple, _Group] = field(default_factory=dict)
    ungrouped: int = 0

    def add(self, issue: DataIssue, count: int = 1, rows: Optional[list[int]] = None) -> None:
        rows = rows if rows is not None else [] if issue.row is None else [issue.row]
        group = self.groups.get(issue.key)
        if group is None:
            if len(self.groups) >= MAX_GROUPS:
                self.ungrouped += count
                return
            group = self.groups[issue.key] = _Group(issue)
        group.add(count, rows)

    def merge(self, other: "Overflow", keep: Callable[[DataIssue], bool] = lambda issue: True) -> None:
        for group in other.groups.values():
            if keep(group.issue):
                self.add(group.issue, group.count, group.rows)
        self.ungrouped += other.ungrouped

    @property
    def total(self) -> int:
        return sum(g.count for g in self.groups.values()) + self.ungrouped


def _rows_text(rows: list[int], count: int) -> str:
    if count <= 1:
        return f"row {rows[0]}" if rows else ""
    shown = ", ".join(str(r) for r in rows)
    more = count - len(rows)
    return f"row {shown}" + (f" and {more} more" if more > 0 else "") + f" ({count:,} rows)"


def summary_lines(issues: list[DataIssue], truncated: int = 0, overflow: Optional[Overflow] = None,
                  name: Callable[[str], str] = str) -> list[str]:
    """One line per distinct problem, in the order first met: the file (through `name`: the user's own name for
    it), how many rows and which, the column, the problem and its fix."""
    groups: dict[tuple, _Group] = {}
    for issue in issues:
        groups.setdefault(issue.key, _Group(issue)).add(1, [] if issue.row is None else [issue.row])
    for group in (overflow.groups.values() if overflow else ()):
        groups.setdefault(group.issue.key, _Group(group.issue)).add(group.count, group.rows)
    lines = []
    for g in groups.values():
        i = g.issue
        where = [p for p in (name(i.file) if i.file else "", _rows_text(g.rows, g.count),
                             f"column '{i.column}'" if i.column else "") if p]
        lines.append((", ".join(where) + ": " if where else "") + i.message + (f" — fix: {i.fix}" if i.fix else ""))
    rest = truncated - (overflow.total - overflow.ungrouped if overflow else 0)
    if rest > 0:
        lines.append(f"... and {rest:,} more problem(s) not shown (raise data.max_errors to see them)")
    return lines


class RowError(ValueError):
    """Raised while normalising one row; the caller adds file and row."""

    def __init__(self, message: str, column: Optional[str] = None, fix: Optional[str] = None):
        super().__init__(message)
        self.message, self.column, self.fix = message, column, fix


class DataError(ValueError):
    """The dataset cannot be used as configured. Carries every issue found (up to the spec's limit)."""

    def __init__(self, issues: list[DataIssue], truncated: int = 0, overflow: Optional[Overflow] = None):
        self.issues, self.truncated, self.overflow = issues, truncated, overflow or Overflow()
        lines = self.lines()
        super().__init__(f"{len(issues) + truncated} data problem(s):\n" + "\n".join(f"  - {l}" for l in lines))

    def lines(self, name: Callable[[str], str] = str) -> list[str]:
        """One line per distinct problem (summary_lines); `name` turns a file path into what the user calls it."""
        return summary_lines(self.issues, self.truncated, self.overflow, name)


class IssueCollector:
    """Collect up to `limit` errors instead of stopping at the first."""

    def __init__(self, limit: int):
        self.limit = limit
        self.errors: list[DataIssue] = []
        self.warnings: list[DataIssue] = []
        self.dropped_errors = 0
        self.overflow = Overflow()  # the dropped ones, grouped

    def error(self, issue: DataIssue) -> None:
        if len(self.errors) < self.limit:
            self.errors.append(issue)
        else:
            self.dropped_errors += 1
            self.overflow.add(issue)

    def absorb(self, other: "IssueCollector") -> None:
        """Another collector's errors and dropped counts, after this one's."""
        for issue in other.errors:
            self.error(issue)
        self.dropped_errors += other.dropped_errors
        self.overflow.merge(other.overflow)

    def warn(self, issue: DataIssue) -> None:
        issue.severity = "warning"
        self.warnings.append(issue)

    @property
    def full(self) -> bool:
        return len(self.errors) >= self.limit

    def raise_if_errors(self) -> None:
        if self.errors:
            raise DataError(self.errors, self.dropped_errors, self.overflow)


def skipped_rows(rows: IssueCollector) -> DataIssue:
    """The warning of a preparation that skipped rows with problems (data.bad_rows: skip): how many, and why."""
    lines = DataError(rows.errors, rows.dropped_errors, rows.overflow).lines()
    total = len(rows.errors) + rows.dropped_errors
    shown = "; ".join(lines[:5]) + (f"; and {len(lines) - 5} more kinds" if len(lines) > 5 else "")
    return DataIssue(f"{total} row{'s' if total != 1 else ''} with problems skipped (data.bad_rows: skip): {shown}",
                     fix="fix those rows to train on them too, or set data.bad_rows: refuse to stop on them",
                     severity="warning")
