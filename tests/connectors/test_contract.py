"""The connector contract over every built-in HTTP connector: 429 + Retry-After, 503, the vendor's own 400, a lost
answer, one verdict per item of a batch, and secrets kept out of reprs, reasons, logs and the render preview. The
checks live in tests/connectors/contract.py so a plugin's tests run the same ones with an entry of their own."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, get_args

import httpx
import pytest

import hub.connector
from connectors import BUILTIN
from connectors.webhook import WebhookConnector
from hub.connector import Outcome, Verdict
from hub.connector.http import classify_status
from hub.registry import connector_class
from tests.connectors.contract import CHECKS, ContractEntry, check_rate_limited, check_secrets_hidden, check_unavailable
from tests.fakes import webhook
from tests.fakes.elastic import elasticsearch
from tests.fakes.freshservice import fake_freshservice
from tests.fakes.linear import TEAM, FakeLinear
from tests.fakes.monday import fake_monday
from tests.fakes.notion import DATA_SOURCE, NotionState, notion_app
from tests.fakes.sentinel import CLIENT_ID, CLIENT_SECRET, DCR, STREAM, TENANT, fake_sentinel
from tests.fakes.splunk_hec import fake_hec
from tests.fakes.writeback import neuro, secureendpoint

# distinctive secrets: a leak of any of them anywhere is unmistakable
WHSEC = "whsec_" + base64.b64encode(b"contract-webhook-signing-key!").decode()
WH_TOKEN = "contract-webhook-bearer-7f3a9c"
FS_KEY = "contract-fs-key-Q9x2Lm"
LIN_KEY = "lin_api_contractSECRET0123456789abcdefghijklmnop"
MON_TOKEN = "contract-monday-token-Zk81Pq"
NTN_TOKEN = "ntn_contractSECRET4242abcdefFAKEfake0123456789"
HEC_TOKEN = "c0417ac7-5ec2-4e7a-9b1d-00c0417ac7e5"
ES_KEY = base64.b64encode(b"contract-id:contract-es-api-key-secret").decode()
SE_KEY = "se_live_contractSECRET9f8e7d"
NEURO_TOKEN = "neuro-contract-token-4c2b1a"


def json_answer(status: int, doc: Any) -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(status, json=doc)


ENTRIES: dict[str, ContractEntry] = {e.type_name: e for e in [
    ContractEntry(
        "webhook", {"url": "http://receiver.test/hook", "secret": WHSEC,
                    "headers": {"authorization": f"Bearer {WH_TOKEN}"}},
        (WHSEC, WHSEC.removeprefix("whsec_"), WH_TOKEN), lambda: webhook.receiver(WHSEC),
        json_answer(400, {"error": "body: field required: finding.id"})),
    ContractEntry(
        "freshservice", {"url": "https://acme.freshservice.com", "auth": {"api_key": FS_KEY},
                         "requester_email": "vuln-bot@example.com"},
        (FS_KEY, base64.b64encode(f"{FS_KEY}:X".encode()).decode()), lambda: fake_freshservice(FS_KEY),
        json_answer(400, {"description": "Validation failed", "errors": [
            {"field": "priority", "message": "It should be one of these values: '1,2,3,4'",
             "code": "invalid_value"}]})),
    ContractEntry(
        "linear", {"auth": {"api_key": LIN_KEY}, "team_id": TEAM}, (LIN_KEY,), lambda: FakeLinear(LIN_KEY).app,
        json_answer(400, {"errors": [{"message": "Argument Validation Error", "extensions": {
            "type": "invalid input", "code": "INPUT_ERROR", "userError": True,
            "userPresentableMessage": "teamId must be a UUID."}}]})),
    ContractEntry(
        "monday", {"url": "http://monday.test", "auth": {"token": MON_TOKEN}, "board_id": 1234567890}, (MON_TOKEN,),
        lambda: fake_monday(MON_TOKEN),
        json_answer(400, {"errors": [{"message": "Cannot query field \"nme\" on type \"Item\".", "extensions": {
            "code": "GraphQLValidationFailed", "status_code": 400}}], "extensions": {"request_id": "contract"}})),
    ContractEntry(
        "notion", {"auth": {"token": NTN_TOKEN}, "data_source_id": DATA_SOURCE}, (NTN_TOKEN,),
        lambda: notion_app(NotionState(token=NTN_TOKEN)),
        json_answer(400, {"object": "error", "status": 400, "code": "validation_error",
                          "message": "body failed validation: body.properties.Severity.select.name should be defined.",
                          "request_id": "7c2f3a1e-0000-4000-8000-000000000000"})),
    ContractEntry(
        "splunk_hec", {"url": "http://hec.test:8088", "auth": {"token": HEC_TOKEN}}, (HEC_TOKEN,),
        lambda: fake_hec(HEC_TOKEN), json_answer(400, {"text": "Invalid data format", "code": 6})),
    ContractEntry(
        "sentinel", {"url": "http://dce.test", "tenant_id": TENANT,
                     "token_url": "http://login.test/{tenant_id}/oauth2/v2.0/token",
                     "auth": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, "dcr_immutable_id": DCR,
                     "stream": STREAM},
        (CLIENT_SECRET,), lambda: fake_sentinel(),
        json_answer(400, {"error": {"code": "InvalidStream",
                                    "message": f"Stream {STREAM} is not declared in the DCR."}}),
        delivery=lambda request: "/oauth2/" not in request.url.path),  # the token call is not the delivery
    ContractEntry(
        "elastic", {"url": "http://es.test:9200", "auth": {"api_key": ES_KEY}}, (ES_KEY,),
        lambda: elasticsearch(api_key=ES_KEY),
        json_answer(400, {"error": {"root_cause": [{"type": "x_content_parse_exception", "reason": "[1:1] Malformed"}],
                                    "type": "x_content_parse_exception", "reason": "[1:1] Malformed"}, "status": 400})),
    ContractEntry(
        "secureendpoint", {"url": "http://se.test/v1", "token": SE_KEY}, (SE_KEY,),
        lambda: secureendpoint(SE_KEY, "fnd_8xkQ2p").app,
        json_answer(400, {"code": "bad_request", "message": "Invalid parameters or malformed JSON"}), case="dismissed"),
    ContractEntry(
        "neuro", {"url": "http://neuro.test/api/v1", "token": NEURO_TOKEN}, (NEURO_TOKEN,),
        lambda: neuro(NEURO_TOKEN, "find_789").app,
        json_answer(400, {"success": False, "error": {"code": "VALIDATION_ERROR", "message": "Invalid field value"}}),
        case="dismissed"),
]}


def test_every_builtin_http_connector_has_an_entry() -> None:
    assert set(ENTRIES) == set(BUILTIN) - {"file"}


def test_hub_connector_is_the_contract_only() -> None:
    """What plugins import from ``hub.connector``: the contract (and USER_AGENT, which its clients send), plus
    TargetConfig (every connector's Config subclasses it and ``Connector``'s type parameter is bound to it); config
    blocks and helpers are in its submodules."""
    defined = {name for name, value in vars(hub.connector).items()
               if getattr(value, "__module__", None) == "hub.connector" and not name.startswith("_")}
    assert set(hub.connector.__all__) == defined | {"USER_AGENT", "TargetConfig"} == {
        "Outcome", "Verdict", "Ref", "Item", "Outbound", "RemoteStatus", "Connector", "ConfigT", "USER_AGENT",
        "TargetConfig", "SupportsBatch", "SupportsEncode", "SupportsStatus", "SupportsSyncBookmark"}


@pytest.mark.parametrize("type_name", sorted(BUILTIN))
def test_a_connector_is_typed_with_the_config_it_is_validated_with(type_name: str) -> None:
    """``class XConnector(HttpConnector[XConfig])`` types ``self.config``; the loader validates with ``Config``."""
    cls = connector_class(type_name)
    assert [get_args(base) for base in cls.__orig_bases__] == [(cls.Config,)]


@pytest.mark.slow
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("type_name", sorted(ENTRIES))
async def test_contract(type_name: str, check: Callable[[ContractEntry], Awaitable[None]]) -> None:
    await check(ENTRIES[type_name])


class CarelessHook(WebhookConnector):
    """A connector that breaks the contract twice: a 429 is final, and its reason quotes the request's headers."""

    def classify(self, response: httpx.Response) -> Verdict:
        verdict = classify_status(response)
        if response.status_code == 429:
            return Verdict(Outcome.PERMANENT, f"rate limited; sent {dict(response.request.headers)}", status=429)
        return verdict


async def test_the_checks_catch_a_connector_that_breaks_the_contract() -> None:
    """The suite is no rubber stamp: a plugin's class given directly is checked, and what it breaks is reported."""
    careless = replace(ENTRIES["webhook"], connector=CarelessHook)
    with pytest.raises(AssertionError, match="a secret shows in a reason"):
        await check_rate_limited(careless)
    with pytest.raises(AssertionError, match="PERMANENT"):  # told no secret to look for, the final 429 still shows
        await check_rate_limited(replace(careless, secrets=()))
    await check_unavailable(careless)  # what it does not break still passes
    await check_secrets_hidden(careless)
