"""Who the edge lets in."""

from __future__ import annotations

import pytest

from ingest.auth import Authenticator, parse_account_secrets, parse_allow_list
from wxarchive.errors import ConfigError


def test_shared_secret() -> None:
    auth = Authenticator("s3cret")
    assert auth.check("1.2.3.4", "s3cret").ok
    assert (auth.check("1.2.3.4", None).status, auth.check("1.2.3.4", None).reason) == (401, "missing secret")
    assert (auth.check("1.2.3.4", "s3cre").status, auth.check("1.2.3.4", "S3CRET").reason) == (403, "wrong secret")
    assert not auth.check("1.2.3.4", "s3cret\x00").ok


def test_per_account_secret_names_its_account() -> None:
    auth = Authenticator("", {"wxid_a": "aa", "wxid_b": "bb"})
    assert auth.check(None, "bb").account == "wxid_b"
    assert not auth.check(None, "cc").ok
    both = Authenticator("shared", {"wxid_a": "aa"})
    assert both.check(None, "shared").account is None  # the shared secret admits any account


def test_allow_list_comes_first() -> None:
    auth = Authenticator("s3cret", allow=parse_allow_list("10.0.0.0/8, 2001:db8::/32, 192.168.1.7"))
    assert auth.check("10.9.8.7", "s3cret").ok and auth.check("2001:db8::1", "s3cret").ok
    assert auth.check("192.168.1.7", "s3cret").ok
    for remote in ("192.168.1.8", None, "not-an-ip"):
        verdict = auth.check(remote, "s3cret")
        assert (verdict.ok, verdict.status, verdict.reason) == (False, 403, "source address not allowed")


def test_no_secret_needs_insecure() -> None:
    with pytest.raises(ConfigError, match="the edge needs a secret"):
        Authenticator("")
    assert Authenticator("", insecure=True).check(None, None).ok
    assert not Authenticator("s3cret", insecure=True).check(None, None).ok  # --insecure does not bypass a secret


@pytest.mark.parametrize("text", ["wxid_a", "wxid_a=", "=hunter2", "wxid_a=hunter2,broken"])
def test_malformed_account_secrets_never_echo_a_secret(text: str) -> None:
    with pytest.raises(ConfigError, match="entries are wcId=SECRET") as err:
        parse_account_secrets(text)
    assert "hunter2" not in str(err.value)


def test_malformed_allow_list() -> None:
    with pytest.raises(ConfigError, match="'10.0.0.0/33' is not an IP address or CIDR block"):
        parse_allow_list("10.0.0.0/8,10.0.0.0/33")
