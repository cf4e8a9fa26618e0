"""Ports: is one free, and which are (tests and local servers pick them this way)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from wxarchive.errors import PrerequisiteError

__all__ = ["free_ports", "require_free_port"]


def require_free_port(host: str, port: int, hint: str) -> None:
    """A clear error now, rather than a server dying on bind later; `hint` says how to choose another port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PrerequisiteError(f"{host}:{port} is already in use by another process ({exc.strerror}); {hint}") from None


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free now, chosen below the kernel's ephemeral range where it is known.

    A port the OS hands out for port 0 comes from the ephemeral range, the same range every outgoing connection
    (a Kafka client's, an HTTP client's) takes its local port from: between choosing a port and a server binding it
    seconds later (`up` starts the broker, the sink and three children first), a connection can take it. Ports
    below that range are never given to outgoing connections. All chosen ports are held open until all are
    chosen, since closing one before asking for the next can hand out the same port twice."""
    low = _ephemeral_low()
    socks: list[socket.socket] = []
    try:
        if low is not None and low > _LOWEST + count:
            for port in random.sample(range(_LOWEST, low), min(low - _LOWEST, 64 * count)):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    sock.bind((host, port))
                except OSError:
                    sock.close()
                    continue
                socks.append(sock)
                if len(socks) == count:
                    return [int(s.getsockname()[1]) for s in socks]
        while len(socks) < count:  # no known range, or too few free below it: what the OS offers
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


_LOWEST = 10000  # above the well-known and commonly configured service ports


def _ephemeral_low() -> int | None:
    """The first port of Linux's ephemeral range (ip_local_port_range), or None elsewhere."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
