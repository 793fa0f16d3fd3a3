"""A fake Freshservice API v2 (tickets, notes, filter) that checks what the real one checks.

Basic auth with exactly ``<api_key>:X``; JSON bodies only; known fields only; a requester
(``requester_id`` or ``email``, or ``phone`` + ``name``); status/priority/source from the documented
values (from the "Ticket Properties" table of https://api.freshservice.com/);
an HTML description; account-mandatory custom fields and "required on closure" custom fields (400
``Validation failed`` with ``errors[]``); a per-minute budget with ``X-RateLimit-*`` headers and 429 +
``Retry-After``. The ticket list (``GET /tickets``) takes only its documented parameters: ``updated_since``
as ``YYYY-MM-DDTHH:MM:SSZ``, ``per_page`` 1-100, ``page`` from 1, newest created first; the filter answers
30 tickets a page for at most 10 pages. Knobs on ``app.state``: ``throttle`` (next N requests get 429),
``lose_creates`` (the next N creates are stored but answered 502: a lost answer), ``closure_required``,
``required_fields``, ``tag_filter`` (False: filtering by tag answers 400), ``remaining``/``total``, ``clock``
(epoch seconds, stamps ``created_at``/``updated_at``), ``now`` (due dates must be
later, ISO; default: the clock; ``fr_due_by`` no later than ``due_by``).
``app.state.agent_edit(id, **fields)`` is a person
changing a ticket in the portal (its ``updated_at`` moves); ``calls`` lists every request as (method, path).
"""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SOURCES = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 18}
STATUSES = {2, 3, 4, 5}
PRIORITIES = {1, 2, 3, 4}
URGENCY_IMPACT = {1, 2, 3}  # the usual convention (unconfirmed; per account)
CREATE_FIELDS = {"subject", "description", "status", "priority", "source", "type", "urgency", "impact", "email",
                 "requester_id", "phone", "name", "tags", "custom_fields", "group_id", "responder_id", "department_id",
                 "category", "sub_category", "item_category", "cc_emails", "due_by", "fr_due_by", "workspace_id"}
UPDATE_FIELDS = CREATE_FIELDS - {"email", "phone", "name"}
FILTER_FIELDS = {"status", "priority", "tag", "requester_id", "group_id", "agent_id", "urgency", "impact"}
LIST_PARAMS = {"updated_since", "per_page", "page", "order_type", "workspace_id", "filter", "requester_id", "email",
               "include", "type"}
FILTER_PAGE, FILTER_PAGES = 30, 10  # the filter's fixed page size, and how many pages it serves


def _error(field: str, message: str, code: str = "invalid_value") -> dict[str, str]:
    return {"field": field, "message": message, "code": code}


def _invalid(errors: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse({"description": "Validation failed", "errors": errors}, status_code=400)


def _due_dates(body: dict[str, Any], now: str) -> list[dict[str, str]]:
    """due_by and fr_due_by: ISO date-times, not in the past, and the first response due no later than the
    resolution (the API refuses fr_due_by after due_by)."""
    errors, when = [], {}
    for k in ("due_by", "fr_due_by"):
        if k not in body:
            continue
        try:
            when[k] = datetime.fromisoformat(str(body[k]).replace("Z", "+00:00"))
        except ValueError:
            errors.append(_error(k, "It should be in the 'valid date time' format", "datatype_mismatch"))
            continue
        if when[k] <= datetime.fromisoformat(now.replace("Z", "+00:00")):
            errors.append(_error(k, "It should be a date time in the future"))
    if "due_by" in when and "fr_due_by" in when and when["fr_due_by"] > when["due_by"]:
        errors.append(_error("fr_due_by", "It should be less than or equal to due_by"))
    return errors


def fake_freshservice(api_key: str = "fs-test-key", requester_ids: tuple[int, ...] = (21000418005,)) -> Starlette:
    tickets: dict[int, dict[str, Any]] = {}
    notes: dict[int, list[dict[str, Any]]] = {}
    calls: list[tuple[str, str]] = []

    def now() -> str:
        return datetime.fromtimestamp(int(app.state.clock()), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def agent_edit(ticket_id: int, **fields: Any) -> None:
        """A person changes the ticket in the portal: no API call, but ``updated_at`` moves."""
        tickets[ticket_id].update(fields, updated_at=now())

    expected = "Basic " + base64.b64encode(f"{api_key}:X".encode()).decode()

    def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
        state = app.state
        limits = {"x-ratelimit-total": str(state.total), "x-ratelimit-remaining": str(max(0, state.remaining)),
                  "x-ratelimit-used-currentrequest": "1"}
        return JSONResponse(body, status_code=status, headers={**limits, **(headers or {})})

    async def gate(request: Request) -> JSONResponse | None:
        """Auth, budget and content type: what every endpoint checks first."""
        calls.append((request.method, request.url.path))
        state = app.state
        state.remaining -= 1  # failed calls count too (targets.md)
        if state.throttle > 0 or state.remaining < 0:
            state.throttle = max(0, state.throttle - 1)
            return answer({"message": "You have exceeded the limit of requests per minute"}, 429,
                          {"retry-after": "1"})
        if request.headers.get("authorization") != expected:
            return answer({"code": "invalid_credentials",
                           "message": "You have to be logged in to perform this action."}, 401)
        if request.method in ("POST", "PUT") and request.headers.get("content-type") != "application/json":
            return answer({"code": "invalid_content_type", "message": "Content-Type header is set to "
                           f"{request.headers.get('content-type')}. It should be set to application/json"}, 415)
        return None

    def check(body: Any, allowed: set[str], creating: bool) -> list[dict[str, str]]:
        if not isinstance(body, dict):
            return [_error("body", "must be a JSON object", "datatype_mismatch")]
        errors = [_error(k, "Unexpected/invalid field in request", "invalid_field") for k in body if k not in allowed]
        if creating:
            if not (body.get("requester_id") or body.get("email") or body.get("phone")):
                errors.append(_error("requester_id", "Please fill at least 1 of requester_id, email, phone fields",
                                     "missing_field"))
            elif body.get("phone") and not body.get("email") and not body.get("name"):
                errors.append(_error("name", "It should be a/an String", "missing_field"))
            for k in ("subject", "description", "status", "priority"):
                if k not in body:
                    errors.append(_error(k, "It should be a/an " + ("String" if k in ("subject", "description")
                                                                    else "Integer"), "missing_field"))
        if "requester_id" in body and body["requester_id"] not in requester_ids:
            errors.append(_error("requester_id", "There is no contact matching the given requester_id"))
        if "email" in body and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", str(body["email"])):
            errors.append(_error("email", "It should be in the 'valid email address' format"))
        for k, values in (("status", STATUSES), ("priority", PRIORITIES), ("source", SOURCES),
                          ("urgency", URGENCY_IMPACT), ("impact", URGENCY_IMPACT)):
            if k in body and (type(body[k]) is not int or body[k] not in values):
                errors.append(_error(k, "It should be one of these values: " + ",".join(map(str, sorted(values)))))
        if "type" in body and body["type"] != "Incident":
            errors.append(_error("type", "It should be one of these values: 'Incident'"))
        if "subject" in body and (not isinstance(body["subject"], str) or not body["subject"].strip()
                                  or len(body["subject"]) > 255):
            errors.append(_error("subject", "It should be a non-empty String of at most 255 characters"))
        if "description" in body and (not isinstance(body["description"], str) or "<" not in body["description"]):
            errors.append(_error("description", "It should be an HTML String", "datatype_mismatch"))
        if "tags" in body and (not isinstance(body["tags"], list)
                               or not all(isinstance(t, str) and 0 < len(t) <= 32 for t in body["tags"])):
            errors.append(_error("tags", "It should be an Array of Strings of at most 32 characters"))
        errors += _due_dates(body, app.state.now or datetime.fromtimestamp(app.state.clock(), UTC).isoformat())
        if "custom_fields" in body and not isinstance(body["custom_fields"], dict):
            errors.append(_error("custom_fields", "It should be a key/value pair", "datatype_mismatch"))
        return errors

    def missing_custom(fields: set[str], values: dict[str, Any]) -> list[dict[str, str]]:
        return [_error(f, "It should not be blank as this is a mandatory field", "missing_field")
                for f in sorted(fields) if values.get(f) in (None, "")]

    async def create(request: Request) -> JSONResponse:
        if (denied := await gate(request)) is not None:
            return denied
        body = await request.json()
        errors = check(body, CREATE_FIELDS, True)
        errors += missing_custom(app.state.required_fields, body.get("custom_fields") or {}) if not errors else []
        if errors:
            return _invalid(errors)
        ticket_id = len(tickets) + 1
        requester = body.get("requester_id") or requester_ids[0]
        tickets[ticket_id] = {"id": ticket_id, "type": "Incident", "source": 2, "urgency": 1, "impact": 1, "tags": [],
                              "custom_fields": {}, "group_id": None, "workspace_id": 2, **body,
                              "requester_id": requester, "created_at": now(), "updated_at": now()}
        tickets[ticket_id].pop("email", None)
        notes[ticket_id] = []
        if app.state.lose_creates > 0:
            app.state.lose_creates -= 1
            return answer({"message": "upstream timed out"}, 502)
        return answer({"ticket": tickets[ticket_id]}, 201)

    async def view(request: Request) -> JSONResponse:
        if (denied := await gate(request)) is not None:
            return denied
        ticket = tickets.get(int(request.path_params["id"]))
        if ticket is None:
            return answer({"code": "access_denied", "message": "You are not authorized to perform this action."}, 404)
        return answer({"ticket": {k: v for k, v in ticket.items() if k != "tags"}})  # tags need include=tags

    async def update(request: Request) -> JSONResponse:
        if (denied := await gate(request)) is not None:
            return denied
        ticket = tickets.get(int(request.path_params["id"]))
        if ticket is None:
            return answer({"code": "access_denied", "message": "You are not authorized to perform this action."}, 404)
        body = await request.json()
        if errors := check(body, UPDATE_FIELDS, False):
            return _invalid(errors)
        merged_cf = {**ticket["custom_fields"], **(body.get("custom_fields") or {})}
        if body.get("status") in (4, 5) and (errors := missing_custom(app.state.closure_required, merged_cf)):
            return _invalid(errors)  # "required when closing the ticket" fields
        ticket.update({**body, "custom_fields": merged_cf, "updated_at": now()})
        return answer({"ticket": ticket})

    async def add_note(request: Request) -> JSONResponse:
        if (denied := await gate(request)) is not None:
            return denied
        ticket_id = int(request.path_params["id"])
        if ticket_id not in tickets:
            return answer({"code": "access_denied", "message": "You are not authorized to perform this action."}, 404)
        body = await request.json()
        errors = [_error(k, "Unexpected/invalid field in request", "invalid_field") for k in body
                  if k not in ("body", "private", "notify_emails", "incoming")]
        if not isinstance(body.get("body"), str) or not body["body"].strip():
            errors.append(_error("body", "It should be a/an String", "missing_field"))
        if errors:
            return _invalid(errors)
        note = {"id": 1000 + sum(map(len, notes.values())), "ticket_id": ticket_id, "private": True, **body}
        notes[ticket_id].append(note)
        return answer({"conversation": note}, 201)

    async def filter_tickets(request: Request) -> JSONResponse:
        if (denied := await gate(request)) is not None:
            return denied
        query = request.query_params.get("query", "")
        if len(query) < 2 or query[0] != '"' or query[-1] != '"':
            return _invalid([_error("query", "Query should be enclosed in double quotes", "invalid_value")])
        if len(query) > 514:
            return _invalid([_error("query", "Query length should not exceed 512 characters", "invalid_value")])
        alternatives = []
        for part in re.split(r"\s+OR\s+", query[1:-1].strip()):
            terms = []
            for term in re.split(r"\s+AND\s+", part.strip()):
                m = re.fullmatch(r"(\w+):(?:'([^']*)'|(\d+|null))", term.strip())
                field = m.group(1) if m else term
                if m is None or (field not in FILTER_FIELDS and not field.startswith("cf_")) \
                        or (field == "tag" and not app.state.tag_filter):
                    return _invalid([_error(field, "Invalid query field/value", "invalid_field")])
                terms.append((field, m.group(2) if m.group(2) is not None else m.group(3)))
            alternatives.append(terms)

        def matches(t: dict[str, Any], field: str, value: str) -> bool:
            if field == "tag":
                return value in t["tags"]
            have = t["custom_fields"].get(field) if field.startswith("cf_") else t.get(field)
            return str(have) == value if value != "null" else have is None

        page = request.query_params.get("page", "1")
        if not page.isdigit() or not 1 <= int(page) <= FILTER_PAGES:
            return _invalid([_error("page", f"It should be a Positive Integer less than or equal to {FILTER_PAGES}")])
        found = [{k: v for k, v in t.items() if k != "tags"} for t in tickets.values()
                 if any(all(matches(t, f, v) for f, v in terms) for terms in alternatives)]
        first = (int(page) - 1) * FILTER_PAGE
        return answer({"tickets": found[first:first + FILTER_PAGE], "total": len(found)})

    async def list_tickets(request: Request) -> JSONResponse:
        """``GET /tickets``: every ticket, newest created first (``order_type=asc``: oldest), paged."""
        if (denied := await gate(request)) is not None:
            return denied
        params = request.query_params
        errors = [_error(k, "Unexpected/invalid field in request", "invalid_field") for k in params
                  if k not in LIST_PARAMS]
        since = params.get("updated_since")
        if since is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", since):
            errors.append(_error("updated_since", "It should be in the 'YYYY-MM-DDTHH:MM:SSZ' format"))
        per_page, page = params.get("per_page", "30"), params.get("page", "1")
        if not per_page.isdigit() or not 1 <= int(per_page) <= 100:
            errors.append(_error("per_page", "It should be a Positive Integer less than or equal to 100"))
        if not page.isdigit() or int(page) < 1:
            errors.append(_error("page", "It should be a Positive Integer"))
        if params.get("order_type", "desc") not in ("asc", "desc"):
            errors.append(_error("order_type", "It should be one of these values: 'asc,desc'"))
        if errors:
            return _invalid(errors)
        found = sorted((t for t in tickets.values() if since is None or t["updated_at"] >= since),
                       key=lambda t: (t["created_at"], t["id"]), reverse=params.get("order_type", "desc") == "desc")
        size = int(per_page)
        first = (int(page) - 1) * size
        return answer({"tickets": [{k: v for k, v in t.items() if k != "tags"} for t in found[first:first + size]]})

    app = Starlette(routes=[
        Route("/api/v2/tickets", create, methods=["POST"]),
        Route("/api/v2/tickets", list_tickets, methods=["GET"]),
        Route("/api/v2/tickets/filter", filter_tickets, methods=["GET"]),
        Route("/api/v2/tickets/{id:int}", view, methods=["GET"]),
        Route("/api/v2/tickets/{id:int}", update, methods=["PUT"]),
        Route("/api/v2/tickets/{id:int}/notes", add_note, methods=["POST"]),
    ])
    app.state.tickets, app.state.notes, app.state.calls = tickets, notes, calls
    app.state.total = app.state.remaining = 500
    app.state.throttle = app.state.lose_creates = 0
    app.state.closure_required, app.state.required_fields = set(), set()
    app.state.tag_filter = True
    app.state.clock, app.state.agent_edit = time.time, agent_edit
    app.state.now = None  # due_by and fr_due_by must be after it; None: the fake's clock
    return app
