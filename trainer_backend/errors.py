"""Error types shared across layers. Bottom of the package: imports nothing of ours."""
from __future__ import annotations


class SpecError(ValueError):
    """A spec that cannot be read or does not validate; the message says what to change."""


def exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and every exception it was raised from or during, innermost last, each once."""
    out: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of the first response in the exception's chain (None: no answer came back)."""
    for link in exception_chain(exc):
        code = getattr(getattr(link, "response", None), "status_code", None)
        if isinstance(code, int):
            return code
    return None
