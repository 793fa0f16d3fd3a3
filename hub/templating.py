"""Sandboxed Jinja: environments, filters, rendering to JSON, and errors that carry template:line.

Templates see plain data (dicts, lists, strings). ``StrictUndefined`` makes a missing field an
error; ``tojson`` is orjson-backed and turns an undefined value into that same clear error instead
of a TypeError from inside json.dumps. Templates write JSON, not HTML, so ``tojson`` does not HTML-escape
``<>&'`` (Jinja's own does, at a fifth of the cost of a SIEM event's render, for nothing a JSON reader
needs).
"""

from __future__ import annotations

import bisect
import html
import re
import sys
import traceback
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jinja2
import orjson
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from hub.errors import TemplateError
from hub.models import SEVERITY_RANK


def _default(value: Any) -> Any:
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()  # raises UndefinedError naming the missing field
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} cannot be written as JSON")


def dumps(value: Any, indent: int | None = None, **_: Any) -> str:
    """The ``tojson`` filter too; ``indent`` (any number) indents by two, the one width orjson writes."""
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    try:
        return orjson.dumps(value, default=_default, option=option).decode()
    except orjson.JSONEncodeError as exc:
        if isinstance(exc.__cause__, jinja2.UndefinedError):  # name the missing field, not "not serializable"
            raise exc.__cause__ from None
        raise


def _truncate_chars(value: Any, length: int, end: str = "...") -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= length else text[: max(0, length - len(end))] + end


def _chunks(value: Any, size: int) -> list[str]:
    text = "" if value is None else str(value)
    return [text[i: i + size] for i in range(0, len(text), size)] or [""]


def _html(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _html_paragraphs(value: Any) -> str:
    """Plain text -> escaped HTML paragraphs (blank lines) with <br> for single newlines."""
    text = "" if value is None else str(value)
    paras = [p for p in re.split(r"\n\s*\n", text.strip()) if p]
    return "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paras)


def _epoch(value: Any) -> float:
    from hub.ids import parse_iso

    return parse_iso(str(value))


FILTERS: dict[str, Callable[..., Any]] = {
    "truncate_chars": _truncate_chars,
    "chunks": _chunks,
    "html": _html,
    "html_paragraphs": _html_paragraphs,
    "severity_rank": lambda s: SEVERITY_RANK.get(str(s), 0),
    "epoch": _epoch,
    "compact": lambda items: [i for i in (items or []) if i not in (None, "", [], {})],
}


def environment(search_path: Iterable[Path] = (), undefined: type[jinja2.Undefined] = StrictUndefined
                ) -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=undefined, autoescape=False, keep_trailing_newline=False,
                               loader=jinja2.FileSystemLoader([str(p) for p in search_path]),
                               extensions=["jinja2.ext.loopcontrols"])
    env.filters.update(FILTERS)
    env.filters["tojson"] = dumps
    return env


_expr_env = expression_env = environment()  # route `when`s (checked by hub/contextcheck.py in the same one)
_lenient_env = environment(undefined=jinja2.ChainableUndefined)


def compile_expression(source: str, lenient: bool = False) -> Callable[..., Any]:
    """A sandboxed expression; raises TemplateError on syntax.

    Strict (route ``when``): a misspelt field is an error. Lenient (adapter field paths): a missing
    path, however deep, is None, because payloads leave optional fields out.
    """
    try:
        return (_lenient_env if lenient else _expr_env).compile_expression(source, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error") from None


def evaluate(expr: Callable[..., Any], **context: Any) -> Any:
    try:
        value = expr(**context)
        return None if isinstance(value, jinja2.ChainableUndefined) else value
    except jinja2.TemplateError as exc:
        raise TemplateError(exc.message or str(exc)) from None
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError) as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from None


_globals: weakref.WeakKeyDictionary[jinja2.Template, dict[str, Any]] = weakref.WeakKeyDictionary()


def _message(exc: Exception) -> str:
    """Jinja's own message, else the exception's type and text (a filter's bug says what it was)."""
    return exc.message if isinstance(exc, jinja2.TemplateError) and exc.message else f"{type(exc).__name__}: {exc}"


def render(template: jinja2.Template, context: dict[str, Any]) -> str:
    """Render; any failure becomes a TemplateError naming the template file and line.

    ``Template.render`` flattens the environment's globals (a ChainMap) into every context: a third of a
    small template's cost on SIEM volumes. They are flattened once per template here instead."""
    try:
        if (globals_ := _globals.get(template)) is None:
            globals_ = _globals[template] = dict(template.globals)
        ctx = template.new_context({**globals_, **context}, shared=True)
        return template.environment.concat(template.root_render_func(ctx))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", exc.filename or template.name or "", exc.lineno) from None
    except Exception as exc:  # noqa: BLE001  (undefined fields, filter errors, sandbox violations ...)
        file, line = _template_frame(exc, template)
        raise TemplateError(_message(exc), file, line) from None


def render_json(template: jinja2.Template, context: dict[str, Any]) -> Any:
    """Render and parse as JSON; invalid JSON names the template and the output line that broke."""
    text = render(template, context)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        line = text.count("\n", 0, exc.pos) + 1
        raise TemplateError(f"output is not valid JSON ({exc.msg} at output line {line})",
                            template.filename or template.name or "") from None


def json_problem(template: jinja2.Template, context: dict[str, Any], lines: bool = False) -> TemplateError | None:
    """Why this render is not JSON (``lines``: not one JSON document per non-empty line), naming the template
    line that wrote the offending output, or None when it is. For check-config, not the delivery path: each
    output chunk is traced back to the line of the template (or included template) that yielded it."""
    text, marks = _traced(template, context)
    starts = [0]
    if lines:
        starts = [m.end() for m in re.finditer("\n", text)]
        starts.insert(0, 0)
    for n, start in enumerate(starts):
        end = text.find("\n", start) if lines else -1
        part = text[start:end if end >= 0 else len(text)]
        if lines and not part.strip():
            continue
        try:
            orjson.loads(part)
        except orjson.JSONDecodeError as exc:
            pos = start + min(exc.pos, max(len(part) - 1, 0))
            file, line = _line_at(template, text, marks, pos)
            where = f"output line {n + 1}" if lines else f"output line {text.count(chr(10), 0, pos) + 1}"
            return TemplateError(f"output is not valid JSON ({exc.msg} at {where})", file, line)
    return None


def _traced(template: jinja2.Template, context: dict[str, Any]) -> tuple[str, list[tuple[int, str, int]]]:
    """The rendered text and, per output chunk, (offset, template file, template line) of the yield that wrote it."""
    gen = template.root_render_func(template.new_context(dict(context), shared=False))
    out: list[str] = []
    marks: list[tuple[int, str, int]] = []
    pos = 0
    try:
        for chunk in gen:
            inner: Any = gen
            while inner.gi_yieldfrom is not None and hasattr(inner.gi_yieldfrom, "gi_frame"):
                inner = inner.gi_yieldfrom  # an include or block: its template wrote the chunk
            frame = inner.gi_frame
            tmpl = frame.f_globals.get("__jinja_template__", template) if frame is not None else template
            line = tmpl.get_corresponding_lineno(frame.f_lineno) if frame is not None else 0
            marks.append((pos, tmpl.filename or tmpl.name or "", line))
            out.append(chunk)
            pos += len(chunk)
    except Exception as exc:  # noqa: BLE001  (the same errors render() reports, with file and line)
        file, line = _template_frame(exc, template)
        raise TemplateError(_message(exc), file, line) from None
    return "".join(out), marks


def _line_at(template: jinja2.Template, text: str, marks: list[tuple[int, str, int]], pos: int) -> tuple[str, int]:
    """The template line that wrote ``text[pos]``; inside a literal chunk spanning lines, the line within it."""
    if not marks:
        return template.filename or template.name or "", 0
    i = max(0, bisect.bisect_right([m[0] for m in marks], pos) - 1)
    start, file, line = marks[i]
    end = marks[i + 1][0] if i + 1 < len(marks) else len(text)
    chunk = text[start:end]
    try:
        source = Path(file).read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError:
        return file, line
    here = "".join(source[max(0, line - 1):])
    if chunk and "\n" in chunk and chunk in here:  # literal template text: count the lines inside it
        line += here[: here.index(chunk)].count("\n") + chunk[: pos - start].count("\n")
    return file, line


def _template_frame(exc: BaseException, template: jinja2.Template) -> tuple[str, int]:
    """The last traceback frame inside a .j2 file: that is the line of the template that failed."""
    file, line = template.filename or template.name or "", 0
    for frame, lineno in traceback.walk_tb(exc.__traceback__ or sys.exc_info()[2]):
        name = frame.f_code.co_filename
        if name.endswith(".j2") or name == template.filename:
            file = name
            tmpl = frame.f_globals.get("__jinja_template__")
            line = tmpl.get_corresponding_lineno(lineno) if tmpl is not None else lineno
    return file, line
