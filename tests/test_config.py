from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from hub.cli import main
from hub.config import HubConfig
from hub.errors import ConfigError
from hub.settings import load_config
from hub.yamlsrc import interpolate

ROOT = Path(__file__).resolve().parents[1]


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "hub.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    return [str(p).replace(str(path), "hub.yaml") for p in info.value.problems]


def test_example_config_is_valid_without_any_environment():
    config = load_config(ROOT / "config.example.yaml", {})
    assert config.sources and config.server.port == 8080
    assert config.db_path == ROOT / "hub.db"  # relative to the config file's folder
    assert all("not set" in str(n) for n in config.notes)


def test_interpolation_forms():
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("x${A}y", env) == ("x1y", [])
    assert interpolate("${B:-dflt}", env) == ("dflt", [])
    assert interpolate("${EMPTY:-dflt}", env) == ("dflt", [])
    assert interpolate("$${A} costs $$5", env) == ("${A} costs $5", [])
    assert interpolate("${B}${C}", env) == ("", ["B", "C"])


def test_unset_variable_is_an_error_at_the_line_that_uses_it(tmp_path):
    out = problems(tmp_path, """\
sources:
  se:
    verify:
      scheme: hmac-sha256
      header: X-SE-Signature
      secrets: ["${SE_WEBHOOK_SECRET}"]
""")
    assert out == ["hub.yaml:6: sources.se.verify.secrets[0]: environment variable SE_WEBHOOK_SECRET is not set "
                   "(set it, or write ${SE_WEBHOOK_SECRET:-default})"]


def test_every_problem_is_collected_with_file_line_and_path(tmp_path):
    out = problems(tmp_path, """\
server: {port: 99999, max_body_byte: 10}
sources:
  se:
    verify:
      scheme: hmac-sha25
      secrets: ["${SE_SECRET}"]
      header: X-SE-Signature
  gh:
    verify:
      scheme: github
      secretz: ["x"]
  sw:
    verify: {scheme: standard-webhooks, secrets: ["abc"]}
    idempotency_key: id
""")
    assert "hub.yaml:1: server.max_body_byte: unknown key; did you mean \"max_body_bytes\"?" in out
    assert "hub.yaml:1: server.port: Input should be less than or equal to 65535" in out
    assert any(p.startswith("hub.yaml:5: sources.se.verify.scheme: must be one of")
               and 'did you mean "hmac-sha256"' in p for p in out)
    assert any(p.startswith("hub.yaml:6: sources.se.verify.secrets[0]: environment variable SE_SECRET") for p in out)
    assert "hub.yaml:11: sources.gh.verify.secretz: unknown key; did you mean \"secrets\"?" in out
    assert "hub.yaml:9: sources.gh.verify.secrets: required key is missing" in out
    assert "hub.yaml:14: sources.sw.idempotency_key: must be a JSON pointer starting with '/', e.g. /id" in out


def test_cross_field_rules_point_at_their_key(tmp_path):
    out = problems(tmp_path, """\
sources:
  a:
    verify: {scheme: hmac-sha256, secrets: ["x"]}
  b:
    verify:
      scheme: github
      secrets: ["x"]
      header: X-Other
      tolerance_secs: 60
  c:
    verify:
      scheme: standard-webhooks
      secrets: ["whsec_"]
  d:
    verify: {scheme: slack, secrets: ["x"], encoding: base64}
""")
    assert out == [
        "hub.yaml:3: sources.a.verify.header: required for scheme hmac-sha256",
        "hub.yaml:8: sources.b.verify.header: not used by scheme github (its header is fixed); remove it",
        "hub.yaml:9: sources.b.verify.tolerance_secs: scheme github signs no timestamp; remove it",
        "hub.yaml:13: sources.c.verify.secrets: secret 1: expected whsec_ followed by base64 (or a whpk_/whsk_ "
        "ed25519 key)",
        "hub.yaml:15: sources.d.verify.encoding: only used by scheme hmac-sha256; remove it",
    ]


def test_yaml_syntax_error_and_duplicate_keys(tmp_path):
    assert problems(tmp_path, "server: {port: 1\nsources: [")[0].startswith("hub.yaml:")
    out = problems(tmp_path, "server:\n  port: 1\n  port: 2\n")
    assert out == ["hub.yaml:3: server.port: duplicate key (first defined on line 2)"]


def test_bad_source_name_and_top_level_shape(tmp_path):
    assert problems(tmp_path, "sources:\n  'has space':\n    verify: {scheme: token, header: X, secrets: [a]}\n") == [
        "hub.yaml:2: sources.has space: invalid name: use letters, digits, '_', '-' or '.', "
        "starting with a letter or digit"]
    assert problems(tmp_path, "- just\n- a list\n") == [
        "hub.yaml:1: the config must be a mapping of keys (server, storage, sources, ...)"]


def test_secrets_never_appear_in_errors_or_reprs(tmp_path):
    secret = "sup3r-s3cret-value"
    text = f"""\
sources:
  a:
    verify: {{scheme: hmac-sha256, header: X, secrets: ["${{S}}"], tolerance_secs: -1}}
  b:
    verify: {{scheme: standard-webhooks, secrets: ["whsec_{secret}!"]}}
"""
    out = problems(tmp_path, text, {"S": secret})
    assert out and not any(secret in p for p in out)
    path = tmp_path / "ok.yaml"
    path.write_text('sources:\n  a:\n    verify: {scheme: token, header: X-T, secrets: ["${S}"]}\n')
    config = load_config(path, {"S": secret})
    assert secret not in repr(config) and secret not in str(config.config.model_dump())
    assert config.sources["a"].verify.secrets[0].get_secret_value() == secret


def test_check_config_exit_codes(tmp_path):
    runner = CliRunner()
    good = runner.invoke(main, ["check-config", str(ROOT / "config.example.yaml")])
    assert good.exit_code == 0, good.output
    assert "config.example.yaml: ok: 3 sources, 1 route, 1 target, 1 mapping (1 template), 2 golden examples " \
        "rendered" in good.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  prot: 8080\n")
    result = runner.invoke(main, ["check-config", "--config", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:2: server.prot: unknown key; did you mean \"port\"?" in result.output
    missing = runner.invoke(main, ["check-config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read file" in missing.output


def test_default_config_path_is_hub_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hub.yaml").write_text("sources: {}\n")
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 0 and "hub.yaml: ok: 0 sources, 0 routes, 0 targets, 0 mappings (0 templates), " \
        "0 golden examples rendered" in result.output


@pytest.mark.parametrize(("kind", "extra", "max_events", "max_bytes"), [
    ("splunk_hec", {"auth": {"token": "t"}}, 1000, 1_000_000),
    ("elastic", {"auth": {"api_key": "k"}}, 1000, 5_000_000),
    ("sentinel", {"tenant_id": "t", "auth": {"client_id": "c", "client_secret": "s"},
                  "dcr_immutable_id": "dcr-0123", "stream": "Custom-Findings"}, 1000, 1_000_000),
])
def test_a_partial_batch_block_keeps_the_connectors_own_defaults(kind, extra, max_events, max_bytes):
    from hub.registry import connector_class

    cfg = connector_class(kind).Config.model_validate(
        {"type": kind, "url": "https://siem.example", "batch": {"in_flight": 7, "timeout_secs": 3}, **extra})
    assert (cfg.batch.in_flight, cfg.batch.timeout_secs) == (7, 3)  # what was given wins ...
    assert (cfg.batch.max_events, cfg.batch.max_bytes) == (max_events, max_bytes)  # ... the rest is the type's own
    with pytest.raises(ValueError, match=re.escape("batch.max_evnts")):
        connector_class(kind).Config.model_validate({"type": kind, "batch": {"max_evnts": 5}, **extra})


def test_a_missing_ca_file_is_a_config_problem_not_a_crash_at_start(tmp_path):
    text = ("targets:\n  siem:\n    type: elastic\n    url: https://es.internal:9200\n    auth: {api_key: k}\n"
            "    request: {ca_file: certs/es-ca.pem}\n")
    [problem] = problems(tmp_path, text)
    assert problem.startswith("hub.yaml:6: targets.siem.request.ca_file: no such file") and "es-ca.pem" in problem
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "es-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "hub.yaml").write_text(text)
    assert load_config(tmp_path / "hub.yaml", {}).targets["siem"].request.ca_file == "certs/es-ca.pem"


@pytest.mark.parametrize(("url", "message"), [
    ("https://https://es.internal:9200", "holds a second scheme"),
    ("https:///_bulk", "has no host name"),
    ("ftp://hooks.internal", "must start with https://"),
    ("https://es.internal:92OO", "not a URL"),
])
def test_a_mistyped_target_url_is_a_config_problem(tmp_path, url, message):
    text = f"targets:\n  hook:\n    type: webhook\n    url: {url}\n"
    [problem] = problems(tmp_path, text)
    assert problem.startswith("hub.yaml:4: targets.hook.url: ") and message in problem


def test_the_loaded_config_cannot_be_changed():
    config = load_config(ROOT / "config.example.yaml", {})
    name = next(iter(config.targets))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.targets = {}
    with pytest.raises(TypeError):
        config.targets[name] = config.targets[name]
    with pytest.raises(ValidationError):
        config.config.server = config.server
    with pytest.raises(ValidationError):
        config.server.port = 1


def test_the_config_models_import_nothing_above_them():
    """hub/config.py is the bottom layer: connectors, adapters, mappings and the pipeline are wired in
    hub/settings.py, never imported here (not even for type checking)."""
    tree = ast.parse((ROOT / "hub" / "config.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module} \
        | {f"hub.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "hub"
           for alias in node.names} \
        | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    above = ("hub.adapters", "hub.registry", "hub.mappings", "hub.contextcheck", "hub.templating", "hub.pipeline",
             "hub.settings", "hub.runtime", "hub.delivery", "connectors")
    assert not {m for m in imported if m.startswith(above)}, imported


@pytest.mark.parametrize(("url", "why"), [
    ("hub.example.com", "must be an http(s) URL"), ("ftp://hub.example.com", "must be an http(s) URL"),
    ("https://", "must be an http(s) URL"), ("https://hub.example.com/?a=1", "must not have a query or fragment")])
def test_a_bad_console_public_url_is_an_error_at_its_line(tmp_path, url, why):
    [out] = problems(tmp_path, f"""\
sources: {{}}
console:
  enabled: true
  public_url: "{url}"
""")
    assert out.startswith("hub.yaml:4: console.public_url: ") and why in out, out


def test_console_public_url_loses_its_trailing_slash(tmp_path):
    config = HubConfig.model_validate({"console": {"public_url": "https://hub.example.com/ops/"}})
    assert config.console.public_url == "https://hub.example.com/ops"


def test_a_shared_port_needs_a_store_several_processes_can_share(tmp_path):
    out = problems(tmp_path, """\
server:
  port: 8080
  reuse_port: true
""")
    assert out == ["hub.yaml:3: server.reuse_port: several processes on one port need storage.url (PostgreSQL): a "
                   "SQLite store is held by one `hub serve`"]
    (tmp_path / "pg.yaml").write_text("server: {reuse_port: true}\nstorage: {url: 'postgresql://db/hub'}\n")
    assert load_config(tmp_path / "pg.yaml", {}).config.server.reuse_port is True
