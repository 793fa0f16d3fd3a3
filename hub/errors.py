"""The HubError tree and the one way problems are written: ``file:line: dotted.path: message``.

    HubError
    ├── ConfigError           config, mapping or template problems (carries Problems)
    ├── RegistryError         unknown or clashing connector/adapter type
    ├── VerificationError     a webhook failed signature or timestamp checks (carries a code)
    ├── StoreError
    │   └── StoreUnavailableError   the store could not commit; the sender should retry   [transient]
    ├── AdapterError          a stored event could not be turned into findings
    └── TemplateError         a mapping template failed to render (carries file and line)

Whether a failure passes is part of its type, not a decision each caller makes: ``transient`` errors
(``is_transient``) leave the work where it was, to be tried again; every other exception fails that
one piece of work, visibly and once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class HubError(Exception):
    """Base of every error the hub raises on purpose. ``transient``: the same work may succeed later unchanged."""

    transient: ClassVar[bool] = False


class ConfigError(HubError):
    def __init__(self, problems: Iterable[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class RegistryError(HubError):
    pass


class VerificationError(HubError):
    """``code`` is the stable error code the receiver answers with."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


class StoreError(HubError):
    pass


class StoreUnavailableError(StoreError):
    """The store could not commit now (busy, disk full, I/O error, writer stopped): nothing was written."""

    transient = True


class AdapterError(HubError):
    pass


class TemplateError(HubError):
    def __init__(self, message: str, file: str = "", line: int = 0):
        self.file, self.line = file, line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{message}")


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` says the work may succeed if tried again unchanged (the store is busy or full, ...).
    Anything else, a bug included, is permanent for that piece of work: retrying it at once would only spin."""
    return isinstance(exc, HubError) and exc.transient


def error_json(status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None) -> bytes:
    """The one JSON error shape of every HTTP answer: ``{ok, code, error, errors, status}``."""
    import orjson

    return orjson.dumps({"ok": False, "code": code, "error": message,
                         "errors": errors if errors is not None else [{"code": code, "message": message}],
                         "status": status})


def format_path(loc: Iterable[str | int]) -> str:
    """``("routes", 0, "when")`` -> ``routes[0].when``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
