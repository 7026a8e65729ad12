"""Data pipeline: load -> detect format -> normalise -> validate -> template -> tokenise."""
from .issues import DataError, DataIssue
from .pipeline import PreparedData, prepare_data

__all__ = ["DataError", "DataIssue", "PreparedData", "prepare_data"]
