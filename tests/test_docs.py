"""Docs cannot drift: every config key and every command is documented."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from hub import config, connector
from hub.cli import main
from hub.connector import config as target_config
from hub.registry import connector_class, connector_paths

DOCS = Path(__file__).resolve().parents[1] / "docs"


def models() -> list[type[BaseModel]]:
    return [m for mod in (config, target_config) for m in vars(mod).values()
            if isinstance(m, type) and issubclass(m, config.StrictModel) and m is not config.StrictModel]


def documented(path: Path) -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", path.read_text(), re.M))


def test_every_config_key_is_in_the_reference():
    keys = documented(DOCS / "configuration.md")
    missing = {f"{m.__name__}.{f.alias or name}" for m in models() for name, f in m.model_fields.items()
               if (f.alias or name) not in keys and name not in ("server", "storage", "sources")}
    assert not missing, f"undocumented config keys: {sorted(missing)}"


def test_every_connector_has_a_page_with_its_own_keys():
    base = set(connector.TargetConfig.model_fields)
    for type_name in connector_paths():
        page = DOCS / "connectors" / f"{type_name}.md"
        assert page.is_file(), f"docs/connectors/{type_name}.md is missing"
        own = set(connector_class(type_name).Config.model_fields) - base
        missing = own - documented(page)
        assert not missing, f"docs/connectors/{type_name}.md does not document {sorted(missing)}"


def test_every_config_field_has_help_text():
    for m in models():
        for name, field in m.model_fields.items():
            assert field.description, f"{m.__name__}.{name} has no description"


def test_every_command_is_documented():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text() + "".join(
        p.read_text() for p in DOCS.rglob("*.md"))

    def names(group, prefix=""):
        for name, cmd in group.commands.items():
            yield f"{prefix}{name}"
            if hasattr(cmd, "commands"):
                yield from names(cmd, f"{prefix}{name} ")

    missing = [n for n in names(main) if f"hub {n}" not in text]
    assert not missing, f"commands missing from README/docs: {missing}"


def test_every_metric_is_in_the_http_reference():
    from hub.metrics import Metrics

    text = (DOCS / "http.md").read_text()
    names = {family.name for family in Metrics().registry.collect()}
    missing = sorted(n for n in names if not re.search(rf"`{re.escape(n)}(_total)?[{{`]", text))
    assert names and not missing, f"metrics missing from docs/http.md: {missing}"


def test_the_connector_guide_example_runs(tmp_path):
    """docs/writing-connectors.md's first example is real code: it renders a request with its token masked."""
    import orjson
    import yaml

    from hub.connector import Item
    from hub.mappings import load_mapping

    source = re.search(r"```python\n(.*?)```", (DOCS / "writing-connectors.md").read_text(), re.S)
    assert source is not None
    namespace: dict[str, object] = {"__name__": "chat_example"}
    exec(compile(source.group(1), "writing-connectors.md", "exec", dont_inherit=True), namespace)
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump({"payloads": {"message": {"template": "message.json.j2"}}}))
    (tmp_path / "message.json.j2").write_text('{{ {"text": finding["title"] ~ " (" ~ kind ~ ")"} | tojson }}')
    chat_config, chat_connector = namespace["ChatConfig"], namespace["ChatConnector"]
    cfg = chat_config(type="chat", url="https://chat.example/hook", token="s3cret")  # type: ignore[operator]
    conn = chat_connector("team", cfg, load_mapping("chat", tmp_path, ("message",)))  # type: ignore[operator]
    [out] = conn.render(Item("dlv_1", "finding.created", "k1", "r", "team", {"title": "Open S3 bucket"}))
    assert (out.method, out.url, orjson.loads(out.body)) == ("POST", "https://chat.example/hook",
                                                             {"text": "Open S3 bucket (finding.created)"})
    assert out.masked_headers()["authorization"] == "********" and "s3cret" in out.headers["authorization"]
