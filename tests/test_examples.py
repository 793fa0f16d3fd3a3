"""Every shipped config passes check-config: config.example.yaml with no environment at all, and each
examples/<type>.yaml once the variables it documents are set (dummy values here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hub.registry import connector_paths
from hub.settings import load_config
from tests.support import HubProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def dummy_env(text: str) -> dict[str, str]:
    """A plausible value for every ${VAR} the file uses (secrets shaped the way their scheme needs)."""
    env = {}
    for name in set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)):
        env[name] = "whsec_ZHVtbXktc2VjcmV0LWZvci10ZXN0cw==" if "WHSEC" in name or "WEBHOOK_SECRET" in name \
            else f"dummy-{name.lower()}"
    return env


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_check_config_with_its_variables_set(path):
    text = path.read_text()
    config = load_config(path, dummy_env(text))
    assert config.targets, f"{path.name} configures no target"
    assert re.search(r"^#", text, re.M), f"{path.name} should document its variables in comments"


def test_every_vendor_connector_has_an_example():
    have = {p.stem for p in EXAMPLES}
    missing = sorted(t for t in connector_paths() if t not in ("file", "webhook") and t not in have)
    assert not missing, f"examples/<type>.yaml missing for {missing}"


@pytest.mark.slow
def test_example_config_serves_with_no_credentials(tmp_path):
    """`hub serve --config config.example.yaml` starts on a machine with nothing set."""
    config = tmp_path / "config.example.yaml"
    config.write_text((ROOT / "config.example.yaml").read_text())
    with HubProcess(config, free_port()) as hub:
        ready = httpx.get(hub.url + "/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
    out = subprocess.run([sys.executable, "-m", "hub", "check-config", str(config)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr


# The seed platforms (docs/adapters.md): those with webhooks and an API take both in one source.
PLATFORMS = {"secureendpoint": {"verify", "poll"}, "neuro": {"verify", "poll"}, "obexum": {"verify", "poll"},
             "secuprobe": {"poll"}, "strobes": {"verify"}}


@pytest.mark.slow
@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_each_seed_platform_has_a_complete_example_in_one_source(platform):
    path = ROOT / "examples" / f"{platform}.yaml"
    assert path.exists(), f"examples/{platform}.yaml is missing"
    config = load_config(path, dummy_env(path.read_text()))
    [(name, source)] = config.sources.items()
    assert name == platform and source.adapter == platform
    assert {k for k in ("verify", "poll") if getattr(source, k) is not None} == PLATFORMS[platform]
