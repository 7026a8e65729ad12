"""Data problems that name the file, row and column, and say how to fix them."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional


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


class RowError(ValueError):
    """Raised while normalising one row; the caller adds file and row."""

    def __init__(self, message: str, column: Optional[str] = None, fix: Optional[str] = None):
        super().__init__(message)
        self.message, self.column, self.fix = message, column, fix


class DataError(ValueError):
    """The dataset cannot be used as configured. Carries every issue found (up to the spec's limit)."""

    def __init__(self, issues: list[DataIssue], truncated: int = 0):
        self.issues, self.truncated = issues, truncated
        lines = [str(i) for i in issues]
        if truncated:
            lines.append(f"... and {truncated} more problem(s) not shown (raise data.max_errors to see them)")
        super().__init__(f"{len(issues) + truncated} data problem(s):\n" + "\n".join(f"  - {l}" for l in lines))


class IssueCollector:
    """Collect up to `limit` errors instead of stopping at the first."""

    def __init__(self, limit: int):
        self.limit = limit
        self.errors: list[DataIssue] = []
        self.warnings: list[DataIssue] = []
        self.dropped_errors = 0

    def error(self, issue: DataIssue) -> None:
        if len(self.errors) < self.limit:
            self.errors.append(issue)
        else:
            self.dropped_errors += 1

    def warn(self, issue: DataIssue) -> None:
        issue.severity = "warning"
        self.warnings.append(issue)

    @property
    def full(self) -> bool:
        return len(self.errors) >= self.limit

    def raise_if_errors(self) -> None:
        if self.errors:
            raise DataError(self.errors, self.dropped_errors)
