"""Errors a user can act on, in one tree. Each class says how it is handled: `exit_code` for the CLI (which
prints the message on one line, no traceback) and `http_status` for an HTTP answer. Handlers read these
attributes; none parses a message's text. Packages keep their own errors in their own modules, under this root:

    WxarchiveError                       exit 1, HTTP 500
    ├── ConfigError                      exit 2: a setting has a value the program cannot use
    ├── PrerequisiteError                exit 1, HTTP 503: Java, Maven, a free port… is missing
    ├── BrokerError                      exit 1, HTTP 503: Kafka cannot be reached, started or stopped
    ├── ClickHouseError                  exit 1, HTTP 503: ClickHouse cannot be opened or refused; `code` is ClickHouse's
    ├── AuditUnavailable                 exit 1, HTTP 503: an audit record was not acknowledged; the request fails closed
    ├── schemas.callback.PayloadError    exit 2, HTTP 400: a body that cannot be archived; `reason` is safe to send back
    ├── eyun.errors.EyunError            HTTP 502: an E云 API call failed (timeout, transport, API code, breaker open)
    ├── ingest.spool.SpoolFull           HTTP 503: the spool reached its limit
    ├── ingest.handoff.RecordRefused     HTTP 413: Kafka refused a record for what it is, not because it is away
    ├── sinks.rows.RowError              HTTP 400: a record that cannot become a row (it goes to the dead-letter topic)
    ├── access.token_admin.UnknownToken  exit 2, HTTP 404: no live token has this id or name
    ├── access.token_admin.AmbiguousToken exit 2, HTTP 409: several live tokens share the name; use the token_id
    └── api.errors.ApiError              HTTP 400: the API refuses what a request asks; subclasses 401, 403, 404, 413,
                                         422, and 503 until the API has read its tokens (api/errors.py)

Exceptions used only as signals inside one module (a protocol refusal, a stop while waiting) are not errors
to handle elsewhere and stay outside the tree.
"""

from __future__ import annotations

__all__ = ["AuditUnavailable", "BrokerError", "ClickHouseError", "ConfigError", "PrerequisiteError", "WxarchiveError"]


class WxarchiveError(Exception):
    """A failure with a message that says what went wrong and what to do about it."""

    exit_code = 1
    http_status = 500


class ConfigError(WxarchiveError):
    """A setting has a value the program cannot use."""

    exit_code = 2


class PrerequisiteError(WxarchiveError):
    """Something the machine must provide (Java, Maven, a free port) is missing."""

    http_status = 503


class BrokerError(WxarchiveError):
    """The local Kafka broker could not be fetched, started or stopped, or Kafka did not answer."""

    http_status = 503


class ClickHouseError(WxarchiveError):
    """ClickHouse could not be opened or reached, or refused a query; `code` is ClickHouse's error code if known."""

    http_status = 503

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class AuditUnavailable(WxarchiveError):
    """An audit record could not be written (Kafka away, too slow, or refusing it). A request that reads or changes
    archive content is then refused with nothing of its result (fail closed): unrecorded access is worse than none."""

    http_status = 503
