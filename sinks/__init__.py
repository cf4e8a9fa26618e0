"""ClickHouse: client access, DDL and the batched, idempotent sinks that write the archive."""
