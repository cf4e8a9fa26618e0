"""Configuration as a user meets it: defaults that work, variables, flags over variables, clear errors."""

from pathlib import Path

import pytest

from wxarchive.config import Settings, describe, mask_dsn
from wxarchive.errors import ConfigError


def test_defaults_work_locally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.load(env={})
    assert s.data_dir == Path("var")
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.clickhouse_dsn == f"chdb://{tmp_path / 'var' / 'clickhouse'}"


def test_environment_then_flags_override_defaults() -> None:
    env = {"WXARCHIVE_KAFKA_BOOTSTRAP": "k1:9093", "WXARCHIVE_DATA_DIR": "/srv/wx", "WXARCHIVE_LOG_LEVEL": "DEBUG"}
    s = Settings.load(env=env, overrides={"kafka_bootstrap": "k2:9094", "log_format": None})
    assert s.kafka_bootstrap == "k2:9094"  # the flag wins
    assert s.data_dir == Path("/srv/wx")
    assert s.clickhouse_dsn == "chdb:///srv/wx/clickhouse"  # follows the data dir
    assert s.log_level == "debug"
    assert s.log_format == "text"  # an unset flag (None) leaves the default


def test_empty_variable_means_unset() -> None:
    assert Settings.load(env={"WXARCHIVE_KAFKA_HEAP": ""}).kafka_heap == "512m"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WXARCHIVE_KAFKA_CONTROLLER_PORT": "ninety"}, "WXARCHIVE_KAFKA_CONTROLLER_PORT must be a whole number"),
        ({"WXARCHIVE_KAFKA_CONTROLLER_PORT": "70000"}, "must be a port number"),
        ({"WXARCHIVE_LOG_LEVEL": "loud"}, "WXARCHIVE_LOG_LEVEL must be one of"),
        ({"WXARCHIVE_LOG_FORMAT": "xml"}, "WXARCHIVE_LOG_FORMAT must be one of"),
        ({"WXARCHIVE_KAFKA_REPLICATION_FACTOR": "0"}, "at least 1"),
        ({"WXARCHIVE_CLICKHOUSE_DSN": "mysql://u:hunter2@db"}, "must start with chdb://, http:// or https://"),
    ],
)
def test_bad_values_are_named_in_the_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        Settings.load(env=env)
    assert "hunter2" not in str(err.value)


def test_masked_hides_dsn_passwords() -> None:
    s = Settings.load(env={"WXARCHIVE_CLICKHOUSE_DSN": "https://archiver:s3cr3t@ch.example:8443/wxarchive"})
    shown = s.masked()
    assert shown["clickhouse_dsn"] == "https://archiver:****@ch.example:8443/wxarchive"
    assert "s3cr3t" not in repr(shown)
    assert mask_dsn("http://ch:8123") == "http://ch:8123"


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [env for env, *_ in describe() if env not in readme]
    assert not missing, f"README's configuration table lacks {missing}"


def test_scrm_uins_map_the_scrms_account_names_and_a_bad_pair_is_refused() -> None:
    settings = Settings.load(env={"WXARCHIVE_SCRM_UINS": "2123131667=wxid_lbejkr1i6jl922, 99 = wxid_b"})
    assert settings.uin_accounts() == {"2123131667": "wxid_lbejkr1i6jl922", "99": "wxid_b"}
    assert Settings.load(env={}).uin_accounts() == {}
    # an empty element between commas is skipped, not an error
    assert Settings.load(env={"WXARCHIVE_SCRM_UINS": "1=a,,2=b"}).uin_accounts() == {"1": "a", "2": "b"}
    for bad in ("2123131667", "=wxid_a", "99=", "1=a,2"):
        with pytest.raises(ConfigError, match="uin=wcId pairs"):
            Settings.load(env={"WXARCHIVE_SCRM_UINS": bad})
