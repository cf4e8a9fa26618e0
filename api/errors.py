"""The API's own refusals, under the one error tree: each says its HTTP status and a short machine-readable `error`
name, and its message is the `reason` sent back (so it never holds anything but what the caller sent or may see).

    WxarchiveError
    └── ApiError                  HTTP 400 bad_request
        ├── Unauthorized          401 unauthorized: no bearer token, or one that is unknown or revoked
        ├── Forbidden             403 forbidden: the token's role lacks the route's permission
        ├── NotFound              404 not_found: no such account, conversation or message
        ├── ResultTooLarge        413 result_too_large: a SQL result past the row or byte cap
        ├── QueryTimedOut         422 query_timed_out: a SQL query ran past its time limit
        └── NotReady              503 not_ready: the principals are not read yet, so no token can be checked
"""

from __future__ import annotations

from wxarchive.errors import WxarchiveError

__all__ = ["ApiError", "Conflict", "Forbidden", "NotFound", "NotReady", "QueryTimedOut", "ResultTooLarge", "Unauthorized", "error_name"]


class ApiError(WxarchiveError):
    """A request the API refuses for what it asks; the message is the reason the caller gets."""

    http_status = 400
    error = "bad_request"


class Unauthorized(ApiError):
    http_status = 401
    error = "unauthorized"


class Forbidden(ApiError):
    http_status = 403
    error = "forbidden"


class NotFound(ApiError):
    http_status = 404
    error = "not_found"


class Conflict(ApiError):
    http_status = 409
    error = "conflict"


class ResultTooLarge(ApiError):
    http_status = 413
    error = "result_too_large"


class QueryTimedOut(ApiError):
    http_status = 422
    error = "query_timed_out"


class NotReady(ApiError):
    http_status = 503
    error = "not_ready"


# the `error` of an answer by its status, for failures that are not ApiErrors (FastAPI's own, ClickHouse's, Kafka's)
_BY_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 413: "result_too_large", 415: "unsupported_media_type",
              422: "invalid_request", 500: "internal_error", 501: "not_implemented", 503: "unavailable"}


def error_name(exc: BaseException | None, status: int) -> str:
    """The `error` field of a JSON error answer: the ApiError's own, else one by the status."""
    if isinstance(exc, ApiError):
        return exc.error
    return _BY_STATUS.get(status, "error")
