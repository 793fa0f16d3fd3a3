"""The command line as a newcomer uses it: sign, send-test against a real `hub serve`, events list/show."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub import signatures
from hub.cli import main
from tests.support import HMAC_SECRET, HubProcess, base_config, free_port, write_config


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def parse_headers(text: str) -> dict[str, str]:
    return {k.lower(): v for k, _, v in (line.partition(": ") for line in text.strip().splitlines())}


@pytest.mark.parametrize("source", ["se", "sw"])
def test_sign_prints_headers_that_verify(config_file, tmp_path, source):
    body = tmp_path / "body.json"
    body.write_bytes(b'{"id": "e1", "x": 1}')
    code, out = invoke("sign", "--config", str(config_file), "--source", source, "--body", str(body))
    assert code == 0, out
    headers = parse_headers(out)
    assert headers["content-type"] == "application/json"
    secret = HMAC_SECRET if source == "se" else "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    opts = {"header": "X-SE-Signature"} if source == "se" else {}
    scheme = signatures.build("hmac-sha256" if source == "se" else "standard-webhooks", [secret], **opts)
    import time
    scheme.verify(headers, body.read_bytes(), time.time())


def test_sign_curl_and_errors(config_file, tmp_path):
    body = tmp_path / "b.json"
    body.write_text("{}")
    code, out = invoke("sign", "--config", str(config_file), "--source", "se", "--body", str(body), "--curl")
    assert code == 0 and out.startswith("curl -sS -X POST -H 'Content-Type: application/json' -H 'X-SE-Signature: ")
    assert out.strip().endswith("'http://127.0.0.1:8080/hooks/se'")
    code, out = invoke("sign", "--config", str(config_file), "--source", "nope", "--body", str(body))
    assert code == 2 and "no source named 'nope' (sources: se, sw)" in out
    code, out = invoke("sign", "--config", str(config_file), "--source", "se", "--body", str(tmp_path / "missing"))
    assert code == 2 and "cannot read" in out


def test_send_test_to_nothing_listening_fails_clearly(config_file):
    code, out = invoke("send-test", "--config", str(config_file), "--source", "se",
                       "--url", f"http://127.0.0.1:{free_port()}/hooks/se")
    assert code == 1 and "could not reach the hub" in out and "hub serve" in out


@pytest.mark.slow
def test_newcomer_flow_serve_send_test_events(tmp_path):
    """hub serve in one terminal, hub send-test in another, then hub events list/show."""
    port = free_port()
    config = write_config(tmp_path / "hub.yaml", base_config(tmp_path, server={"host": "127.0.0.1", "port": port}))
    with HubProcess(config, port):
        code, out = invoke("send-test", "--config", str(config), "--source", "se")
        assert code == 0, out
        assert f"POST http://127.0.0.1:{port}/hooks/se -> 202" in out
        event_id = json.loads(out.splitlines()[1])["id"]
        code, out = invoke("send-test", "--config", str(config), "--source", "sw")
        assert code == 0 and "-> 202" in out
        code, listing = invoke("events", "list", "--config", str(config))
        assert code == 0 and event_id in listing and "processed" in listing
        code, shown = invoke("events", "show", event_id, "--config", str(config))
        doc = json.loads(shown)
        assert doc["source"] == "se" and doc["body"]["finding"]["title"] == "Test finding from hub send-test"
        assert doc["headers"]["x-se-signature"] == "[redacted]"
        code, lines = invoke("events", "list", "--config", str(config), "--json", "--source", "sw")
        assert [json.loads(line)["source"] for line in lines.splitlines()] == ["sw"]
    code, out = invoke("events", "show", "evt_999", "--config", str(config))
    assert code == 1 and "no event evt_999" in out


@pytest.mark.slow
def test_python_dash_m_hub_runs():
    out = subprocess.run([sys.executable, "-m", "hub", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for command in ("serve", "check-config", "sign", "send-test", "events"):
        assert command in out.stdout


@pytest.mark.slow
def test_serve_with_a_broken_config_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  x:\n    verify: {scheme: nope, secrets: [a]}\n")
    out = subprocess.run([sys.executable, "-m", "hub", "serve", "--config", str(bad)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2 and f"{bad}:3: sources.x.verify.scheme: must be one of" in out.stderr


def test_readme_quickstart_commands_are_the_real_ones():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert 'pip install -e . && hub serve --config config.example.yaml' in readme
    assert 'pip install -e ".[test]" && pytest' in readme
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]" && pytest' in ci
