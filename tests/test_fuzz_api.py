"""Schemathesis against the hub's own ``/api/v1/openapi.json``: every operation, positive and negative data,
every check (no 5xx, documented status codes, content types, headers and response schemas, bad data
rejected, auth not ignored), authenticated with a real token of the operation's scope.

The hub runs in-process under uvicorn on 127.0.0.1 (a free port): the checks that send requests of their own
(ignored_auth, unsupported_method) need a real base URL. ``FUZZ_EXAMPLES`` bounds the examples per operation
(CI's default keeps the whole run well under a minute on two cores); the totals are printed in pytest's
summary (tests/conftest.py).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from hub import tokens
from hub.api import ENDPOINTS, anonymous
from hub.app import create_app
from hub.cli import main
from hub.runtime import Hub
from hub.settings import load_config
from tests.support import base_config, free_port, write_config

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))  # per operation and mode
# Ingest checks each finding beyond what a schema can say (severity words, CVSS, dates): a schema-valid body whose
# every item fails is the documented 422, not a rejected valid request.
CONFIG = {"operations": [{"include-operation-id": "findings.ingest", "checks": {"positive_data_acceptance": {
    "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]}}},
    # the SLA report's since must come before its until: one rule across two parameters, which a schema cannot say
    {"include-operation-id": "sla.report", "checks": {"positive_data_acceptance": {
        "expected-statuses": ["2xx", "400", "401", "403", "404", "409"]}}}]}
SENT: dict[str, int] = {"requests": 0, "5xx": 0}

pytestmark = pytest.mark.slow  # each test drives real sockets or many generated requests


class Served:
    """A hub under uvicorn (lifespan on, so the hub starts and closes with the server) in a thread."""

    def __init__(self, config: Path):
        self.hub = Hub(load_config(config), scheduler=False)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.hub), host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the hub did not start under uvicorn")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("fuzz-api")
    config = write_config(tmp / "hub.yaml", base_config(tmp, api={"rate_limit_per_min": 1_000_000}))
    minted = {}
    for scope in tokens.SCOPES:
        result = CliRunner().invoke(main, ["tokens", "create", "--config", str(config), "--name", f"fuzz-{scope}",
                                           "--scope", scope])
        assert result.exit_code == 0, result.output
        minted[scope] = result.output.strip().splitlines()[0]
    with pytest.MonkeyPatch.context() as patch:
        # schemathesis sends many unauthenticated requests (ignored_auth) from one address and checks that each is
        # a 401: the per-address budget for them (tests/test_anonymous.py) would turn the later ones into 429s
        patch.setattr(anonymous, "BURST", 1_000_000)
        with Served(config) as server:
            yield server, minted


@pytest.fixture(scope="module")
def api_schema(served: tuple[Served, dict[str, str]]) -> Any:
    server, _ = served
    return schemathesis.openapi.from_url(f"http://127.0.0.1:{server.port}/api/v1/openapi.json",
                                         config=schemathesis.Config.from_dict(CONFIG))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path"), [(ep.method, ep.path) for ep in ENDPOINTS],
                         ids=[ep.action for ep in ENDPOINTS])
def test_api_answers_generated_requests_without_5xx_and_as_documented(method: str, path: str, mode: GenerationMode,
                                                                      api_schema: Any,
                                                                      served: tuple[Served, dict[str, str]]):
    """Bounded examples of one operation in one mode; every check schemathesis has (its ``--checks all``)."""
    _, minted = served
    operation = api_schema[path][method]
    auth = {"Authorization": f"Bearer {minted[operation.definition.raw['x-scope']]}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call(headers=auth)
        SENT["requests"] += 1
        SENT["5xx"] += response.status_code >= 500
        case.validate_response(response, headers=auth)

    run()
