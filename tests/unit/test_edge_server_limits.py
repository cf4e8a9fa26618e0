"""The edge server's limits from settings: checked at start, and the connection cap fitted to the open files."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ingest.app import READ_CAP_FACTOR
from ingest.protocol import FD_RESERVE, EdgeLimits, response
from wxarchive.config import Settings
from wxarchive.errors import ConfigError


def test_defaults_are_bounded_and_fit_a_generous_open_file_limit() -> None:
    s = Settings()
    limits = EdgeLimits.from_settings(s, open_files=65536)
    assert (limits.max_url_bytes, limits.max_header_bytes, limits.max_head_bytes, limits.max_headers) == (8192, 8192, 16384, 100)
    assert (limits.head_timeout, limits.body_timeout, limits.keepalive_timeout) == (10.0, 10.0, 5.0)
    assert limits.max_connections == 1000 and limits.max_requests == 1000 and limits.keepalive_requests == 1000
    assert limits.body_read_cap == READ_CAP_FACTOR * s.edge_max_body_bytes


def test_the_connection_cap_is_lowered_to_fit_the_open_file_limit() -> None:
    assert EdgeLimits.from_settings(Settings(), open_files=256).max_connections == 256 - FD_RESERVE


@pytest.mark.parametrize(("change", "message"), [
    ({"edge_max_head_bytes": 4096}, "WXARCHIVE_EDGE_MAX_HEAD_BYTES must be at least WXARCHIVE_EDGE_MAX_URL_BYTES"),
    ({"edge_max_headers": 0}, "WXARCHIVE_EDGE_MAX_HEADERS must be at least 8"),
    ({"edge_head_timeout": 0.0}, "WXARCHIVE_EDGE_HEAD_TIMEOUT must be a positive number of seconds"),
    ({"edge_max_connections": 0}, "WXARCHIVE_EDGE_MAX_CONNECTIONS must be at least 1"),
])
def test_settings_that_would_leave_the_edge_unbounded_or_unusable_are_refused(change: dict[str, Any],
                                                                              message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EdgeLimits.from_settings(dataclasses.replace(Settings(), **change), open_files=65536)


def test_a_refusal_is_a_whole_answer_in_the_apps_shape_that_closes() -> None:
    assert response(431, "request head too large") == (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\ncontent-length: 62\r\n"
        b'connection: close\r\n\r\n{"code":"1001","message":"request head too large","data":null}')
