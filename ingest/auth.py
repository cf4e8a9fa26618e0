"""Who may post callbacks. E云 cannot sign its requests, so the secret travels in the callback URL
(`/callback/SECRET`, or `?secret=SECRET` where a path segment cannot be added), optionally narrowed by a
source-address allow-list. Secrets are compared in constant time, every configured one every time, so the
answer's timing does not tell which secret, or how much of one, was right.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from wxarchive.config import Settings, env_name
from wxarchive.errors import ConfigError

__all__ = ["Authenticator", "parse_account_secrets", "parse_allow_list"]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    status: int = 200
    reason: str = ""
    account: str | None = None  # set when a per-account secret matched: only that wcId may be posted


DENY_MISSING = Verdict(False, 401, "missing secret")
DENY_WRONG = Verdict(False, 403, "wrong secret")
DENY_SOURCE = Verdict(False, 403, "source address not allowed")
ALLOW_ANY = Verdict(True)


class Authenticator:
    def __init__(self, shared: str = "", per_account: dict[str, str] | None = None,
                 allow: list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None = None, insecure: bool = False) -> None:
        self._shared = shared.encode()
        self._accounts = [(wc_id, secret.encode()) for wc_id, secret in (per_account or {}).items()]
        self._allow = allow or []
        self.insecure = insecure
        if not insecure and not self._shared and not self._accounts:
            raise ConfigError(
                f"the edge needs a secret: set {env_name('edge_secret')} (or {env_name('edge_account_secrets')}), "
                "or pass --insecure for local use"
            )

    @classmethod
    def from_settings(cls, settings: Settings, insecure: bool = False) -> Authenticator:
        return cls(settings.edge_secret, parse_account_secrets(settings.edge_account_secrets),
                   parse_allow_list(settings.edge_allow_ips), insecure=insecure)

    def check(self, remote: str | None, secret: str | None) -> Verdict:
        if self._allow and not _allowed(remote, self._allow):
            return DENY_SOURCE
        if self.insecure and not self._shared and not self._accounts:
            return ALLOW_ANY
        if not secret:
            return DENY_MISSING
        given = secret.encode()
        verdict = DENY_WRONG
        if self._shared and hmac.compare_digest(given, self._shared):
            verdict = ALLOW_ANY
        for wc_id, expected in self._accounts:
            if hmac.compare_digest(given, expected) and verdict is DENY_WRONG:
                verdict = Verdict(True, account=wc_id)
        return verdict


def _allowed(remote: str | None, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(address in net for net in networks)


def parse_account_secrets(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        wc_id, sep, secret = item.partition("=")
        if not sep or not wc_id.strip() or not secret.strip():
            raise ConfigError(f"{env_name('edge_account_secrets')} entries are wcId=SECRET; one entry is malformed")
        out[wc_id.strip()] = secret.strip()
    return out


def parse_allow_list(text: str, setting: str = "edge_allow_ips") -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated IPs or CIDRs; `setting` names the field in the error (also used for the trusted proxies)."""
    networks = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{env_name(setting)}: {item!r} is not an IP address or CIDR block") from None
    return networks
