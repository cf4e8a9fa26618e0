"""Who may do what on the read side: bearer tokens and the principals holding them, roles and their permissions,
and the audit trail every content request leaves. The API and the CLI stand on it; it stands on the core and the
schemas only (it writes events to Kafka, never to ClickHouse)."""
