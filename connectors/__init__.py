"""Built-in connector types: ``BUILTIN = {type: "module:Class"}`` and nothing else (see hub/registry.py)."""

BUILTIN: dict[str, str] = {
    "file": "connectors.file:FileConnector",
    "webhook": "connectors.webhook:WebhookConnector",
    "freshservice": "connectors.freshservice:FreshserviceConnector",
    "linear": "connectors.linear:LinearConnector",
    "monday": "connectors.monday:MondayConnector",
    "notion": "connectors.notion:NotionConnector",
    "splunk_hec": "connectors.splunk_hec:SplunkHecConnector",
    "sentinel": "connectors.sentinel:SentinelConnector",
    "elastic": "connectors.elastic:ElasticConnector",
    "secureendpoint": "connectors.secureendpoint:SecureEndpointConnector",
    "neuro": "connectors.neuro:NeuroConnector",
}
