"""A ClickHouse HTTP request read the way a ClickHouse server reads it: who asks, what SQL, in which format.

The server's rules (docs: interfaces/http), kept so that clickhouse-connect, curl and Grafana work unchanged:
- credentials from `X-ClickHouse-User`/`X-ClickHouse-Key`, else HTTP basic auth, else the `user`/`password`
  parameters, else the user `default` with no password; mixing two ways is an error;
- the SQL is the `query` parameter, then the POST body after a newline;
- every URL parameter that is not one of the interface's own is a setting; `param_NAME` is the query parameter
  NAME, its value in ClickHouse's escaped text form, handed to the engine as it came (see Verbatim);
- the result format is the SQL's FORMAT clause, else `default_format`, else TabSeparated.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from door.failures import Failure

__all__ = ["Credentials", "Verbatim", "credentials", "effective_format", "query_parameters", "query_settings"]

# URL parameters of the interface itself, never settings
INTERFACE_PARAMETERS = frozenset({
    "query", "database", "default_format", "query_id", "user", "password", "quota_key", "session_id",
    "session_timeout", "session_check", "compress", "decompress", "buffer_size", "wait_end_of_query",
    "stacktrace", "role", "client_protocol_version",
})
# settings about the HTTP exchange, not the query: the door's own behaviour covers them
TRANSPORT_SETTINGS = frozenset({
    "enable_http_compression", "http_zlib_compression_level", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "http_response_buffer_size", "cancel_http_readonly_queries_on_client_close",
    "http_wait_end_of_query", "add_http_cors_header", "http_native_compression_disable_checksumming_on_decompress",
})


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


def credentials(headers: Mapping[str, str], params: Mapping[str, str]) -> Credentials | Failure:
    header_user, header_key = headers.get("X-ClickHouse-User", ""), headers.get("X-ClickHouse-Key", "")
    authorization = headers.get("Authorization", "")
    in_params = "user" in params or "password" in params
    if header_user or header_key:
        if authorization or in_params:
            return Failure(516, "AUTHENTICATION_FAILED", "Invalid authentication: it is not allowed to use "
                           "X-ClickHouse HTTP headers and other authentication methods simultaneously")
        return Credentials(header_user or "default", header_key)
    if authorization:
        if in_params:
            return Failure(516, "AUTHENTICATION_FAILED", "Invalid authentication: it is not allowed to use "
                           "Authorization HTTP header and authentication via parameters simultaneously")
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return Failure(516, "AUTHENTICATION_FAILED",
                           f"Invalid authentication: '{scheme[:32]}' HTTP Authorization scheme is not supported")
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return Failure(516, "AUTHENTICATION_FAILED", "Invalid authentication: the basic credentials do not decode")
        return Credentials(user, password)
    return Credentials(params.get("user", "default"), params.get("password", ""))


class Verbatim:
    """A parameter value passed on exactly as the reader sent it. A server reads `param_NAME` in ClickHouse's
    escaped text form, for every type (`tab\\there`, `['x','y\\'z']`); clickhouse-connect would format a str as
    a String (escaping its quotes again), but passes any other object through `str()`, so this keeps the text
    as the reader wrote it and the engine reads it as a server would."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Verbatim({self.text!r})"


def query_parameters(params: Mapping[str, str]) -> dict[str, Verbatim]:
    return {k[len("param_"):]: Verbatim(v) for k, v in params.items() if k.startswith("param_") and len(k) > 6}


def query_settings(params: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items()
            if k not in INTERFACE_PARAMETERS and k not in TRANSPORT_SETTINGS and not k.startswith("param_")}


def effective_format(named_in_sql: str | None, params: Mapping[str, str]) -> str:
    return named_in_sql or params.get("default_format") or "TabSeparated"
