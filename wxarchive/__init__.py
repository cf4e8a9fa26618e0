"""wxarchive: the shared core (configuration, logging, Kafka clients, CLI) of the WeChat message archive."""

__version__ = "0.1.0"
