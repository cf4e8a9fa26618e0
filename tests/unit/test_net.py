"""Free ports for servers started later: distinct, bindable, and never from the range outgoing connections use."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from wxarchive.errors import PrerequisiteError
from wxarchive.net import free_ports, require_free_port

RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = free_ports(12)
    assert len(set(ports)) == 12
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
    if RANGE.exists():  # where the kernel says which ports outgoing connections take, none of those is chosen
        low = int(RANGE.read_text().split()[0])
        assert all(port < low for port in ports), (ports, low)


def test_a_taken_port_is_named_with_the_hint() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(PrerequisiteError, match=f"127.0.0.1:{port} is already in use.*set another"):
            require_free_port("127.0.0.1", port, "set another")
