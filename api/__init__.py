"""`wxarchive api`: the read side's HTTP API. Bearer tokens and roles, an audit record before every answer that
reads or changes archive content, the native API under /api/v1 and the SCRM's own /wechat_api/* endpoints, all
read through the door (or a ClickHouse server) over http, never by opening the archive."""
