"""What every content route declares alike: its error answers in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from api.models import ErrorBody

__all__ = ["ERRORS"]

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A parameter the API cannot use (a cursor of another list, …)"},
    401: {"model": ErrorBody, "description": "No bearer token, or one that is unknown or revoked"},
    403: {"model": ErrorBody, "description": "The token's role may not do this"},
    404: {"model": ErrorBody, "description": "No such account, conversation or message"},
    422: {"model": ErrorBody, "description": "A parameter that does not validate"},
    503: {"model": ErrorBody, "description": "The audit record could not be written (nothing is answered), or "
                                             "ClickHouse or the principals are not available yet"},
}
