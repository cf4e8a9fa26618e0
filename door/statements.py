"""What the door lets a query be: one read statement that reaches nothing outside the archive.

ClickHouse's own `readonly=1` (which the door's engine sessions hold and cannot leave) refuses writes, DDL,
settings that lift limits and most table functions. Measured with chdb 4.4 / engine 26.9, three ways out stay
open under it, so the door refuses them before the engine sees the query:
- the scalar function `file('/etc/hostname')` reads any file the process can read;
- `SELECT … INTO OUTFILE 'path'` writes a file (in-process, the "client" is the engine's own process);
- `KILL QUERY` is allowed and would kill the sink's inserts; `USE` would change a pooled session's database.
`eval(expr)` runs a query built from a string, so no check of the tokens could see what it runs: refused.
And chdb's `Python(name)` table function reads a Python object of the calling process by name; readonly=1
refuses it today, the door refuses it whatever a later chdb does. Every other table function that reaches
outside (file, url, s3, remote, executable, mysql, postgresql, …) is refused here as well, so one test
(tests/unit/test_door_statements.py) can hold each of them shut without depending on the engine's choice.

The check works on tokens, not text: string literals, quoted identifiers and comments are skipped as ClickHouse's
lexer skips them, so `SELECT 'file('` passes and `` SELECT `file` /* x */ ('/etc/passwd') `` does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["OUTSIDE_FUNCTIONS", "READ_STATEMENTS", "Refusal", "TABLE_BY_NAME_FUNCTIONS", "named_format", "refusal", "touches"]

# the first keyword of a statement the door runs
READ_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})

# the first keyword of every other statement ClickHouse knows: refused as writes, not as typos
OTHER_STATEMENTS = frozenset({
    "INSERT", "CREATE", "DROP", "ALTER", "SET", "KILL", "USE", "SYSTEM", "OPTIMIZE", "TRUNCATE", "RENAME", "GRANT",
    "REVOKE", "ATTACH", "DETACH", "BACKUP", "RESTORE", "EXCHANGE", "DELETE", "UPDATE", "UNDROP", "CHECK", "WATCH",
    "MOVE", "BEGIN", "COMMIT", "ROLLBACK", "REPLACE", "UNDO", "EXECUTE", "PARALLEL",
})

# functions (table or scalar) that read or write outside the archive; compared in lower case
OUTSIDE_FUNCTIONS = frozenset(name.lower() for name in (
    "file", "fileCluster", "filesystem", "input", "python",
    "url", "urlCluster", "s3", "s3Cluster", "gcs", "oss", "cosn", "azureBlobStorage", "azureBlobStorageCluster",
    "hdfs", "hdfsCluster", "remote", "remoteSecure", "cluster", "clusterAllReplicas",
    "executable", "executablePool", "mysql", "postgresql", "sqlite", "mongodb", "redis", "jdbc", "odbc",
    "iceberg", "icebergS3", "icebergAzure", "icebergHDFS", "icebergLocal", "icebergCluster", "icebergS3Cluster",
    "icebergAzureCluster", "icebergHDFSCluster", "deltaLake", "deltaLakeS3", "deltaLakeAzure", "deltaLakeLocal",
    "deltaLakeCluster", "deltaLakeS3Cluster", "deltaLakeAzureCluster", "hudi", "hudiCluster", "paimon", "paimonS3",
    "paimonAzure", "paimonHDFS", "paimonLocal", "paimonCluster", "paimonS3Cluster", "paimonAzureCluster",
    "paimonHDFSCluster", "ytsaurus", "arrowFlight", "dictionary", "s3Queue", "azureQueue", "bigquery",
    "icebergLocalCluster", "arrowstream",
    # builds a query from a string and runs it: every check on tokens would be beaten by concat('fi', 'le(')
    "eval",
))


@dataclass(frozen=True)
class Refusal:
    """Why the door will not run a statement, worded for the reader; ClickHouse's code and name go with it."""

    message: str
    code: int = 164
    name: str = "READONLY"


_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>--[^\n]*|\#[^\n]*|/\*)
    | (?P<string>'(?:[^'\\]|\\.|'')*')
    | (?P<quoted>"(?:[^"\\]|\\.|"")*"|`(?:[^`\\]|\\.|``)*`)
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<number>[0-9][0-9A-Za-z_.]*)
    | (?P<other>[^'"`])
    """,
    re.VERBOSE | re.DOTALL,
)


def _tokens(sql: str) -> list[tuple[str, str]] | Refusal:
    """(kind, text) for every token but spaces and comments; words keep their case, quoted names lose quotes."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(sql):
        match = _TOKEN.match(sql, pos)
        if match is None:  # an unterminated string or quoted name: the engine would refuse it too
            return Refusal("the query has an unterminated string or quoted name", 62, "SYNTAX_ERROR")
        kind = match.lastgroup or "other"
        if kind == "comment" and match.group() == "/*":
            end = _block_comment_end(sql, match.end())
            if end < 0:
                return Refusal("the query has an unterminated comment", 62, "SYNTAX_ERROR")
            pos = end
            continue
        pos = match.end()
        if kind in ("space", "comment"):
            continue
        text = match.group()
        if kind == "quoted":
            kind, text = "word", text[1:-1]
        out.append((kind, text))
    return out


def _block_comment_end(sql: str, pos: int) -> int:
    """The end of a /* … */ comment that began before `pos`; ClickHouse nests them."""
    depth = 1
    while depth:
        opening, closing = sql.find("/*", pos), sql.find("*/", pos)
        if closing < 0:
            return -1
        if 0 <= opening < closing:
            depth, pos = depth + 1, opening + 2
        else:
            depth, pos = depth - 1, closing + 2
    return pos


def refusal(sql: str) -> Refusal | None:
    """None when the door may run `sql`; otherwise why not."""
    tokens = _tokens(sql)
    if isinstance(tokens, Refusal):
        return tokens
    while tokens and tokens[-1] == ("other", ";"):
        tokens.pop()
    if not tokens:
        return Refusal("the query is empty", 62, "SYNTAX_ERROR")
    first = next((text.upper() for kind, text in tokens if kind != "other" or text != "("), "")
    if first not in READ_STATEMENTS and first not in OTHER_STATEMENTS:
        return Refusal(f"Syntax error: failed at position 1 ({first[:40] or sql.strip()[:1]!r}): expected one of "
                       f"{', '.join(sorted(READ_STATEMENTS))}", 62, "SYNTAX_ERROR")
    if first not in READ_STATEMENTS:
        hint = "; settings go in the URL or a SETTINGS clause" if first == "SET" else ""
        return Refusal(f"Cannot execute query in readonly mode: the archive serves reads only "
                       f"({', '.join(sorted(READ_STATEMENTS))}), not {first or 'this statement'}{hint}")
    for i, (kind, text) in enumerate(tokens):
        if (kind, text) == ("other", ";"):
            return Refusal("the door runs one statement per request", 62, "SYNTAX_ERROR")
        if kind != "word":
            continue
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if following == ("other", "(") and text.lower() in OUTSIDE_FUNCTIONS:
            return Refusal(f"{text}() reaches outside the archive; the door refuses it")
        if text.upper() == "INTO" and following[0] == "word" and following[1].upper() == "OUTFILE":
            return Refusal("INTO OUTFILE writes a file; the door refuses it (the result comes back in the response)")
    return None


def named_format(sql: str) -> str | None:
    """The output format the statement names in its FORMAT clause, if it has one."""
    tokens = _tokens(sql)
    if isinstance(tokens, Refusal):
        return None
    named = None
    for (kind, text), (next_kind, next_text) in zip(tokens, tokens[1:]):
        if kind == "word" and text.upper() == "FORMAT" and next_kind == "word":
            named = next_text
    return named


# table functions that read a table named by their arguments, which may be strings or built from them at run time
TABLE_BY_NAME_FUNCTIONS = frozenset(name.lower() for name in (
    "merge", "loop", "mergeTreeIndex", "mergeTreeTextIndex", "mergeTreeProjection", "mergeTreeAnalyzeIndexes",
    "mergeTreeAnalyzeIndexesUUID", "mergeTreeCodecBlockCounts", "timeSeriesData", "timeSeriesMetrics",
    "timeSeriesTags", "timeSeriesSamples", "timeSeriesSelector", "timeSeriesMetricFamilies", "prometheusQuery",
    "prometheusQueryRange", "viewIfPermitted",
))


def touches(sql: str, names: frozenset[str]) -> str | None:
    """Why `sql` may read one of the tables `names` (lower case, e.g. "audit_log"), or None when it cannot: a
    name among its identifiers or inside a string, or a table function that takes a table by name (whose
    arguments could spell any name at run time). For a reader whose role may not see those tables; the door
    itself serves one trusted user, so this is the API's check, not the door's."""
    tokens = _tokens(sql)
    if isinstance(tokens, Refusal):
        return tokens.message
    for i, (kind, text) in enumerate(tokens):
        lowered = text.lower()
        if kind == "word" and i + 1 < len(tokens) and tokens[i + 1] == ("other", "(") \
                and lowered in TABLE_BY_NAME_FUNCTIONS:
            return f"{text}() reads tables by name; it is not available to this role"
        if kind in ("word", "string") and any(name in lowered for name in names):
            return f"this role may not read {', '.join(sorted(names))}"
    return None
