"""Failures answered the way a ClickHouse server answers them, so clients that parse them keep working.

A server answers a failed query with an HTTP status chosen from the exception's code (the mapping of
ClickHouse's `exceptionCodeToHTTPStatus`, src/Server/HTTP/exceptionCodeToHTTPStatus.cpp), the header
`X-ClickHouse-Exception-Code`, and a body `Code: N. DB::Exception: message. (NAME) (version V)`.
clickhouse-connect, curl users and Grafana read exactly these. READONLY and ACCESS_DENIED answer 403, as the
server has since 23.x.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Failure", "from_engine", "status_for"]

# by the exception's name, which the engine's text carries beside its code
_STATUS = {
    **dict.fromkeys((
        "BAD_ARGUMENTS", "CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE", "CANNOT_PARSE_QUOTED_STRING",
        "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER", "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
        "CANNOT_PARSE_UUID", "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6", "UNKNOWN_ELEMENT_IN_AST",
        "UNKNOWN_TYPE_OF_AST_NODE", "TOO_DEEP_AST", "TOO_BIG_AST", "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR",
        "INCORRECT_DATA", "TYPE_MISMATCH", "ILLEGAL_TYPE_OF_ARGUMENT", "NUMBER_OF_ARGUMENTS_DOESNT_MATCH",
        "UNKNOWN_QUERY_PARAMETER", "BAD_QUERY_PARAMETER", "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    ), 400),
    **dict.fromkeys((
        "UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE", "UNKNOWN_STORAGE",
        "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_DIRECTION_OF_SORTING", "UNKNOWN_AGGREGATE_FUNCTION",
        "UNKNOWN_FORMAT", "UNKNOWN_DATABASE_ENGINE", "UNKNOWN_TYPE_OF_QUERY",
    ), 404),
    **dict.fromkeys(("READONLY", "ACCESS_DENIED", "UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED"), 403),
    "REQUIRED_PASSWORD": 401,
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "SOCKET_TIMEOUT": 503,
    "CANNOT_OPEN_FILE": 503,
    "TOO_MANY_SIMULTANEOUS_QUERIES": 503,
    "HTTP_LENGTH_REQUIRED": 411,
}

_CODE = re.compile(r"Code: (\d+)\. ")
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)(?: \(version [^)]*\))?\.?\s*$")
_DB_EXCEPTION = re.compile(r"^(?:Code: \d+\. )?(?:DB::Exception: )?")
_FOR_URL = re.compile(r"\s*\(for url [^)]*\)\s*$")  # clickhouse-connect's http client appends where it asked


def status_for(name: str) -> int:
    """The HTTP status a ClickHouse server gives an exception (by its name, e.g. SYNTAX_ERROR)."""
    return _STATUS.get(name, 500)


@dataclass(frozen=True)
class Failure:
    """One refused or failed query: ClickHouse's code and name, and the message a reader sees."""

    code: int
    name: str
    message: str

    @property
    def status(self) -> int:
        return status_for(self.name)

    def body(self, version: str) -> bytes:
        message = self.message.rstrip().rstrip(".")
        return f"Code: {self.code}. DB::Exception: {message}. ({self.name}) (version {version})\n".encode()


def from_engine(exc: BaseException) -> Failure:
    """The engine's own failure as the server would state it. clickhouse-connect wraps chdb's text (sometimes
    twice: "Code: 164. DB::Exception: Code: 164. DB::Exception: …"); keep the innermost statement once."""
    text = _FOR_URL.sub("", " ".join(str(exc).split())) or type(exc).__name__
    codes = _CODE.findall(text)
    if not codes:
        return Failure(1002, "UNKNOWN_EXCEPTION", text)
    code = int(codes[-1])
    inner = text[text.rfind(f"Code: {code}. "):]
    named = _NAME.search(inner)
    name = named.group(1) if named else "UNKNOWN_EXCEPTION"
    message = inner[: named.start()] if named else inner
    message = _DB_EXCEPTION.sub("", message).strip()
    return Failure(code, name, message)
