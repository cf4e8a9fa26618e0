"""Typed failures of E云 API calls. Each carries the endpoint, and the API's code and message if it answered."""

from __future__ import annotations

from wxarchive.errors import WxarchiveError

__all__ = ["EyunApiError", "EyunError", "EyunProtocolError", "EyunTimeout", "EyunTransportError", "EyunUnavailable"]


class EyunError(WxarchiveError):
    http_status = 502

    def __init__(self, endpoint: str, message: str, code: str | None = None) -> None:
        super().__init__(f"{endpoint}: {message}" + (f" (code {code})" if code else ""))
        self.endpoint = endpoint
        self.message = message
        self.code = code


class EyunApiError(EyunError):
    """The API answered with a failure code ("1001")."""


class EyunTimeout(EyunError):
    """No answer within the client's timeout."""


class EyunTransportError(EyunError):
    """Connection refused or reset, an HTTP error status, or a body that is not JSON."""


class EyunProtocolError(EyunError):
    """The API answered success with data of an unexpected shape."""


class EyunUnavailable(EyunError):
    """The circuit breaker is open: recent calls failed, so this one was not sent."""
