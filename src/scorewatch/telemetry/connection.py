"""Application Insights connection strings: parsing, with the defaults Azure's SDKs apply.

``InstrumentationKey=<guid>;IngestionEndpoint=https://<region>.in.applicationinsights.azure.com/``
is the usual shape. Keys are case-insensitive; without ``IngestionEndpoint`` the endpoint is built from
``EndpointSuffix`` (and ``Location``) or falls back to the global ``https://dc.services.visualstudio.com``,
as ``azure-monitor-opentelemetry-exporter`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from scorewatch.errors import ConfigError

DEFAULT_INGESTION_ENDPOINT = "https://dc.services.visualstudio.com"


@dataclass(frozen=True)
class ConnectionString:
    """The parts of a connection string the exporter needs."""

    instrumentation_key: str
    ingestion_endpoint: str

    @property
    def track_url(self) -> str:
        """Where envelopes are POSTed: ``{IngestionEndpoint}/v2.1/track``."""
        return self.ingestion_endpoint.rstrip("/") + "/v2.1/track"

    @property
    def ikey_no_dashes(self) -> str:
        return self.instrumentation_key.replace("-", "")


def parse_connection_string(value: str) -> ConnectionString:
    """Parse ``value``; a :class:`ConfigError` names what is wrong (the key itself is never echoed)."""
    if not value or not value.strip():
        raise ConfigError("the Application Insights connection string is empty")
    parts: dict[str, str] = {}
    for raw in value.split(";"):
        if not raw.strip():
            continue
        key, sep, val = raw.partition("=")
        if not sep:
            raise ConfigError(f"connection string part {key.strip()[:40]!r} is not of the form Key=Value")
        parts[key.strip().lower()] = val.strip()
    ikey = parts.get("instrumentationkey", "")
    if not ikey:
        raise ConfigError("the connection string has no InstrumentationKey")
    endpoint = parts.get("ingestionendpoint", "")
    if not endpoint:
        suffix = parts.get("endpointsuffix", "")
        if suffix:
            location = parts.get("location", "")
            host = f"{location}.dc.{suffix}" if location else f"dc.{suffix}"
            endpoint = f"https://{host.strip('.')}"
        else:
            endpoint = DEFAULT_INGESTION_ENDPOINT
    split = urlsplit(endpoint)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise ConfigError(f"IngestionEndpoint {endpoint!r} is not an http(s) URL")
    return ConnectionString(instrumentation_key=ikey, ingestion_endpoint=endpoint.rstrip("/"))
