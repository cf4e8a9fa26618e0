"""wxarchive: the shared core (configuration, logging, Kafka clients, CLI) of the WeChat message archive."""

__all__ = ["__version__"]

__version__ = "0.1.0"
