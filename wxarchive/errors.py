"""Errors a user can act on. The CLI prints their message on one line and exits non-zero, no traceback."""


class WxarchiveError(Exception):
    """A failure with a message that says what went wrong and what to do about it."""

    exit_code = 1


class ConfigError(WxarchiveError):
    """A setting has a value the program cannot use."""

    exit_code = 2


class PrerequisiteError(WxarchiveError):
    """Something the machine must provide (Java, Maven, a free port) is missing."""


class BrokerError(WxarchiveError):
    """The local Kafka broker could not be fetched, started or stopped."""


class ClickHouseError(WxarchiveError):
    """ClickHouse could not be opened or reached."""
