"""Mappings and templates: errors name the template file and line; golden examples hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub import templating
from hub.errors import ConfigError, TemplateError
from hub.goldens import check
from hub.mappings import BUILTIN_ROOT, load_mapping
from hub.registry import connector_class, connector_paths


def mapping_dir(tmp_path: Path, template: str, name: str = "body.json.j2") -> Path:
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    (folder / "mapping.yaml").write_text(f"payloads:\n  body: {{template: {name}}}\nvars: {{label: sec}}\n")
    (folder / name).write_text(template)
    return folder


def test_undefined_field_names_file_line_and_field(tmp_path):
    folder = mapping_dir(tmp_path, '{"a": 1,\n "b": {{ finding.nope | tojson }}}\n')
    m = load_mapping("webhook", folder)
    with pytest.raises(TemplateError) as info:
        m.render_json("body", {"finding": {"title": "x"}})
    assert info.value.file.endswith("body.json.j2") and info.value.line == 2
    assert "nope" in str(info.value)


def test_undefined_outside_tojson(tmp_path):
    m = load_mapping("webhook", mapping_dir(tmp_path, '{"a": "{{ finding.missing }}"}'))
    with pytest.raises(TemplateError) as info:
        m.render_json("body", {"finding": {}})
    assert "missing" in str(info.value) and info.value.line == 1


def test_syntax_error_is_a_config_problem_with_line(tmp_path):
    folder = mapping_dir(tmp_path, '{"a": 1,\n\n "b": {{ finding.title | tojson }\n}')
    with pytest.raises(ConfigError) as info:
        load_mapping("webhook", folder)
    [problem] = info.value.problems
    assert problem.file.endswith("body.json.j2") and problem.line == 3


def test_invalid_json_output_is_reported(tmp_path):
    m = load_mapping("webhook", mapping_dir(tmp_path, '{"a": {{ finding.title }}}'))
    with pytest.raises(TemplateError) as info:
        m.render_json("body", {"finding": {"title": "not quoted"}})
    assert "not valid JSON" in str(info.value) and "body.json.j2" in str(info.value)


def test_tojson_escapes_and_vars(tmp_path):
    body = '{"t": {{ finding.title | tojson }}, "l": {{ vars.label | tojson }}}'
    m = load_mapping("webhook", mapping_dir(tmp_path, body))
    out = m.render_json("body", {"finding": {"title": 'quote " and </script> \\ newline\n'}, "vars": m.vars})
    assert out == {"t": 'quote " and </script> \\ newline\n', "l": "sec"}


def test_sandbox_blocks_python_internals(tmp_path):
    m = load_mapping("webhook", mapping_dir(tmp_path, '{"x": {{ finding.__class__.__mro__ | tojson }}}'))
    with pytest.raises(TemplateError):
        m.render_json("body", {"finding": {}})
    expr = templating.compile_expression("finding.__class__.__subclasses__()")
    with pytest.raises(TemplateError):
        templating.evaluate(expr, finding={})


def test_mapping_file_problems(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "mapping.yaml").write_text("payloads:\n  body: {template: missing.j2, kinds: [finding.nope]}\nextra: 1\n")
    with pytest.raises(ConfigError) as info:
        load_mapping("webhook", folder, ("body", "other"))
    text = "\n".join(map(str, info.value.problems))
    assert "mapping.yaml:3: extra: unknown key" in text
    assert "payloads.body.kinds[0]: unknown kind 'finding.nope'" in text
    assert "template file missing.j2 not found" in text
    assert "missing payload 'other'" in text


def test_filters():
    f = templating.FILTERS
    assert f["truncate_chars"]("abcdef", 4) == "a..."
    assert f["chunks"]("abcde", 2) == ["ab", "cd", "e"] and f["chunks"]("", 2) == [""]
    assert f["html_paragraphs"]("a <b>\nc\n\nd") == "<p>a &lt;b&gt;<br>c</p><p>d</p>"
    assert f["severity_rank"]("critical") == 5 and f["compact"]([None, "", 1, [], {}]) == [1]


@pytest.mark.slow
@pytest.mark.parametrize("type_name", sorted(t for t in connector_paths() if (BUILTIN_ROOT / t).is_dir()))
def test_builtin_mapping_golden_examples(type_name):
    mapping = load_mapping(type_name, BUILTIN_ROOT / type_name, connector_class(type_name).payloads)
    compared, bad = check(type_name, mapping)
    assert compared > 0, f"built-in mapping {type_name} has no golden examples"
    assert not bad, "\n".join(map(str, bad))


def test_every_builtin_connector_ships_a_mapping():
    for type_name in connector_paths():
        mapping = BUILTIN_ROOT / type_name / "mapping.yaml"
        assert mapping.is_file(), f"hub/builtin_mappings/{type_name}/mapping.yaml is missing"
