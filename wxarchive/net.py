"""Ports: is one free, and which are (tests and local servers pick them this way)."""

from __future__ import annotations

import socket

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
    """`count` distinct ports the OS says are free now: all are held open until all are chosen, since
    closing one before asking for the next can hand out the same port twice."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
