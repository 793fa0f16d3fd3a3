"""Misspelt fields in a route's `when` or a mapping's templates are config problems with file, line and a
"did you mean", found before anything runs; what is legal (dict fields, guards, macros, aliases) is not flagged."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from hub import contextcheck
from hub.cli import main
from hub.errors import ConfigError
from hub.mappings import BUILTIN_ROOT, load_mapping
from hub.registry import connector_class, connector_paths
from hub.settings import load_config
from hub.templating import expression_env
from tests.support import scanner_source, write_config


def config(tmp_path: Path, when: str | None = None, on: list[str] | None = None, **target: Any) -> dict[str, Any]:
    route: dict[str, Any] = {"name": "criticals", "on": on or ["finding.created", "finding.updated"], "to": ["hook"]}
    if when is not None:
        route["when"] = when
    return {"storage": {"path": str(tmp_path / "hub.db")},
            "sources": {"scanner": scanner_source({"title": "item.title"})},
            "routes": [route],
            "targets": {"hook": {"type": "webhook", "url": "https://example.test/hook", "secret": "whsec_dGVzdA==",
                                 **target}}}


def problems(tmp_path: Path, data: dict[str, Any]) -> list[str]:
    path = write_config(tmp_path / "hub.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    return [str(p).replace(str(tmp_path) + "/", "") for p in info.value.problems]


def test_a_misspelt_field_in_when_fails_check_config_at_the_line_of_the_when_key(tmp_path):
    path = write_config(tmp_path / "hub.yaml", config(tmp_path, 'finding.severty == "critical"'))
    line = when_line(tmp_path)
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == (f'{path}:{line}: routes[0].when: finding.severty: unknown field "severty" '
                                             'of finding; did you mean "severity"?')


@pytest.mark.parametrize(("when", "on", "message"), [
    ("finding.asset.tag", None, 'finding.asset.tag: unknown field "tag" of finding.asset; did you mean "tags"?'),
    ("findng.severity", None, 'findng: unknown name "findng"; did you mean "finding"?'),
    ('event.source == "x"', None, 'event: unknown name "event" (known: changes, finding, kind) (only event.received '
                                  'routes see it)'),
    ("event.sorce", ["event.received"], 'event.sorce: unknown field "sorce" of event; did you mean "source"?'),
    ("delivery.reasn", ["delivery.dead"], 'delivery.reasn: unknown field "reasn" of delivery; did you mean "reason"?'),
    ('finding.external_refs["linear"].idd', None,
     'finding.external_refs["linear"].idd: unknown field "idd" of finding.external_refs[...]; did you mean "id"?'),
])
def test_when_checks_fields_and_names_against_what_the_routes_kinds_provide(tmp_path, when, on, message):
    found = problems(tmp_path, config(tmp_path, when, on))
    assert found == [f"hub.yaml:{when_line(tmp_path)}: routes[0].when: {message}"]


def when_line(tmp_path: Path) -> int:
    text = (tmp_path / "hub.yaml").read_text().splitlines()
    return next(n for n, line in enumerate(text, 1) if line.strip().startswith("when:"))


@pytest.mark.parametrize("when", [
    'finding.raw.anything.at.all == 1 and changes.severity.new == "high"',  # dict fields take any key
    "finding.foo is defined and finding.foo",  # a guard, and what it guards
    'finding.nope | default("x") == "x"',
    'finding.cve[0].lower() == "cve" and finding.cve | length > 1 and finding.title is string',  # filters, tests
    'finding.asset.get("hostname") and finding.asset.items() and finding.references[1:]',  # dict methods, slices
    'kind == "event.received" and event.body.x or kind != "event.received" and finding.severity == "high"',
    "tenant is defined and tenant.name == 1",  # a guarded name is not an unknown name
])
def test_what_is_legal_is_not_flagged(when):
    kinds = ["finding.created", "event.received"] if "event" in when else ["finding.created"]
    assert contextcheck.when_problems(when, kinds, expression_env) == []


def custom_mapping(tmp_path: Path, template: str) -> Path:
    folder = tmp_path / "mymap"
    shutil.copytree(BUILTIN_ROOT / "webhook", folder)
    (folder / "body.json.j2").write_text(template)
    (folder / "_macros.j2").write_text('{% macro where(finding) %}{{ finding.whatever }}{% endmacro %}\n'
                                       '{% macro sev() %}{{ finding.severity }}{{ finding.sevrity }}{% endmacro %}\n')
    return folder


def test_a_misspelt_field_in_a_template_names_the_template_file_and_line(tmp_path):
    custom_mapping(tmp_path, """\
{%- import "_macros.j2" as m with context -%}
{%- set a = finding.asset -%}
{"host": {{ a.hostnme | tojson }},
 "secret": {{ target.secret | tojson }}, "name": {{ target.name | tojson }}, "timeout": {{ target.request.timout }},
 "ok": {{ finding.raw.x is defined and vars.nothing is defined }}, "sev": {{ m.sev() | tojson }},
 "where": {{ m.where(finding) | tojson }}, "ids": [{% for r in finding.references %}{{ loop.index }}{% endfor %}],
 "id": {{ delivery.idempotency_key | tojson }}, "attempt": {{ delivry.attempt }}}
""")
    assert problems(tmp_path, config(tmp_path, mapping="mymap")) == [
        'mymap/_macros.j2:2: finding.sevrity: unknown field "sevrity" of finding; did you mean "severity"?',
        'mymap/body.json.j2:3: a.hostnme: unknown field "hostnme" of finding.asset; did you mean "hostname"?',
        'mymap/body.json.j2:4: target.request.timout: unknown field "timout" of target.request; '
        'did you mean "timeout_secs"?',
        'mymap/body.json.j2:4: target.secret: unknown field "secret" of target (known: circuit_breaker, concurrency, '
        'headers, mapping, name, rate_limit, request, retry, type, url) (a secret: templates never see secrets)',
        'mymap/body.json.j2:7: delivry: unknown name "delivry"; did you mean "delivery"?',
    ]


@pytest.mark.slow
@pytest.mark.parametrize("type_name", sorted(connector_paths()))
def test_every_shipped_mapping_passes_the_check(type_name):
    cls = connector_class(type_name)
    mapping = load_mapping(type_name, BUILTIN_ROOT / type_name, cls.payloads)
    spec = BUILTIN_ROOT / type_name / "examples" / "target.yaml"
    target = cls.Config.model_validate({"type": type_name, **(yaml.safe_load(spec.read_text()) or {})})
    roots = contextcheck.template_context("t", target, mapping)
    assert list(contextcheck.template_problems(mapping, roots)) == []


# --- golden examples rendered by check-config ---------------------------------------------------------------

BRANCH = '{"type": {{ kind | tojson }}, "finding": {{ finding | tojson }}, "changes": {{ changes | tojson }}}'


def broken_webhook_mapping(tmp_path: Path, new_branch: str) -> Path:
    folder = tmp_path / "mymap"
    shutil.copytree(BUILTIN_ROOT / "webhook", folder)
    body = folder / "body.json.j2"
    assert BRANCH in body.read_text()
    body.write_text(body.read_text().replace(BRANCH, new_branch))
    return folder


def check_config(tmp_path: Path, data: dict[str, Any]) -> tuple[int, list[str]]:
    path = write_config(tmp_path / "hub.yaml", data)
    result = CliRunner().invoke(main, ["check-config", str(path)])
    return result.exit_code, [line.replace(str(tmp_path) + "/", "") for line in result.output.splitlines()]


def test_check_config_renders_the_golden_examples_and_names_the_template_line_of_bad_json(tmp_path):
    broken_webhook_mapping(tmp_path, '{"type": {{ kind | tojson }},\n "title": {{ finding.title }},\n "n": 1}')
    code, out = check_config(tmp_path, config(tmp_path, mapping="mymap"))
    assert code == 2
    assert out == [
        "mymap/body.json.j2:8: golden example created.finding.json (finding.created): output is not valid JSON "
        "(unexpected character, expected a JSON value at output line 2)",
        "mymap/body.json.j2:8: golden example updated.finding.json (finding.updated): output is not valid JSON "
        "(unexpected character, expected a JSON value at output line 2)",
        "2 problem(s) in hub.yaml"]


def test_check_config_reports_a_render_error_of_a_golden_example_with_its_template_line(tmp_path):
    broken_webhook_mapping(tmp_path, '{"old":\n {{ changes.severity.old | tojson }}}')  # created has no changes
    code, out = check_config(tmp_path, config(tmp_path, mapping="mymap"))
    assert code == 2
    assert out == ["mymap/body.json.j2:8: golden example created.finding.json (finding.created): 'dict object' has no "
                   "attribute 'severity'", "1 problem(s) in hub.yaml"]


def test_output_that_differs_from_the_golden_file_is_for_test_mappings_not_check_config(tmp_path):
    broken_webhook_mapping(tmp_path, BRANCH.replace('"changes"', '"extra": 1, "changes"'))
    code, out = check_config(tmp_path, config(tmp_path, mapping="mymap"))
    assert code == 0 and out == ["hub.yaml: ok: 1 source, 1 route, 1 target, 1 mapping (1 template), "
                                 "3 golden examples rendered"]
    result = CliRunner().invoke(main, ["test-mappings", "--config", str(tmp_path / "hub.yaml"), "--type", "webhook"])
    assert result.exit_code == 1 and "differs from created.body.json" in result.output


def test_check_config_says_what_it_checked(tmp_path):
    data = config(tmp_path, 'finding.severity == "critical"')
    data["targets"]["hook2"] = {**data["targets"]["hook"], "url": "https://other.test/hook"}
    data["targets"]["archive"] = {"type": "file", "path": "out.ndjson"}
    data["routes"].append({"name": "all", "on": ["finding.created"], "to": ["archive", "hook2"]})
    code, out = check_config(tmp_path, data)
    assert code == 0 and out == ["hub.yaml: ok: 1 source, 2 routes, 3 targets, 2 mappings (2 templates), "
                                 "8 golden examples rendered"]  # webhook's 3 examples for each of its 2 targets
