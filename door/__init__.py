"""The door: the embedded archive's ClickHouse HTTP interface, read-only, served by the sink's process."""
