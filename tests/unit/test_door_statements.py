"""The door's statement check: reads pass, every way out is refused however it is spelled."""

from __future__ import annotations

import pytest

from door.statements import named_format, refusal, touches

READS = [
    "SELECT 1",
    "  select count() FROM wxarchive.v_messages;",
    "WITH 1 AS x SELECT x",
    "(SELECT 1)",
    "SHOW TABLES FROM wxarchive",
    "DESCRIBE TABLE wxarchive.messages",
    "DESC wxarchive.messages",
    "EXPLAIN indexes = 1 SELECT * FROM wxarchive.messages WHERE hasAllTokens(content, 'x')",
    "EXISTS TABLE wxarchive.messages",
    "SELECT 'file(''/etc/hostname'')' AS text",  # a string is not a call
    "SELECT 1 AS file",  # nor is a name
    "SELECT \"file\" FROM (SELECT 1 AS file)",
    "-- file('/etc/passwd')\nSELECT 1",
    "SELECT /* url('http://x') /* nested */ still comment */ 1",
    "SELECT 1 FORMAT JSON",
    "SELECT * FROM numbers(10)",
    "SELECT 1 SETTINGS max_threads = 1",  # the engine decides which settings a readonly session may change
]

WAYS_OUT = [
    ("SELECT * FROM file('/etc/hostname', 'LineAsString')", "file()"),
    ("SELECT file('/etc/hostname')", "file()"),
    ("SELECT `file`('/etc/hostname')", "file()"),
    ("SELECT \"file\" ('/etc/hostname')", "file()"),
    ("SELECT FILE /* c */ ('/etc/hostname')", "FILE()"),
    ("SELECT * FROM url('http://127.0.0.1:1/x', 'CSV', 'a String')", "url()"),
    ("SELECT * FROM s3('http://127.0.0.1:1/bucket/x.csv', 'CSV', 'a String')", "s3()"),
    ("SELECT * FROM remote('127.0.0.1:9000', system.one)", "remote()"),
    ("SELECT * FROM remoteSecure('127.0.0.1:9440', system.one)", "remoteSecure()"),
    ("SELECT * FROM executable('x.sh', 'TSV', 'a String')", "executable()"),
    ("SELECT * FROM mysql('127.0.0.1:1', 'd', 't', 'u', 'p')", "mysql()"),
    ("SELECT * FROM postgresql('127.0.0.1:1', 'd', 't', 'u', 'p')", "postgresql()"),
    ("SELECT * FROM sqlite('/tmp/x.db', 't')", "sqlite()"),
    ("SELECT * FROM hdfs('hdfs://x/y', 'CSV', 'a String')", "hdfs()"),
    ("SELECT * FROM Python(frame)", "Python()"),
    ("SELECT * FROM eval(concat('SELECT fi', 'le(''/etc/hostname'')'))", "eval()"),
    ("SELECT * FROM dictionary('d')", "dictionary()"),
    ("SELECT * FROM input('a String')", "input()"),
    ("SELECT * FROM view(SELECT * FROM file('/etc/hostname', 'LineAsString'))", "file()"),
    ("SELECT 1 INTO OUTFILE '/tmp/out.txt'", "INTO OUTFILE"),
    ("select 1 into /* x */ outfile '/tmp/out.txt'", "INTO OUTFILE"),
    ("INSERT INTO wxarchive.messages VALUES (1)", "readonly mode"),
    ("CREATE DICTIONARY d (a UInt8) PRIMARY KEY a SOURCE(FILE(path '/etc/passwd' format 'CSV')) LAYOUT(FLAT())",
     "readonly mode"),
    ("DROP TABLE wxarchive.messages", "readonly mode"),
    ("ALTER TABLE wxarchive.messages DELETE WHERE 1", "readonly mode"),
    ("KILL QUERY WHERE 1", "readonly mode"),
    ("USE system", "readonly mode"),
    ("SET readonly = 0", "SETTINGS clause"),
    ("SYSTEM SHUTDOWN", "readonly mode"),
    ("OPTIMIZE TABLE wxarchive.messages FINAL", "readonly mode"),
    ("BACKUP DATABASE wxarchive TO Disk('default', 'b')", "readonly mode"),
    ("SELECT 1; DROP TABLE wxarchive.messages", "one statement"),
    ("SELECT 1; SELECT 2", "one statement"),
    ("SELEC 1", "Syntax error"),
    ("", "empty"),
    ("  ;  ", "empty"),
    ("SELECT 'unterminated", "unterminated"),
    ("SELECT 1 /* unterminated", "unterminated"),
]


@pytest.mark.parametrize("sql", READS)
def test_reads_pass(sql: str) -> None:
    assert refusal(sql) is None


@pytest.mark.parametrize(("sql", "says"), WAYS_OUT)
def test_ways_out_are_refused_with_a_reason(sql: str, says: str) -> None:
    refused = refusal(sql)
    assert refused is not None and says in refused.message
    assert (refused.code, refused.name) in ((164, "READONLY"), (62, "SYNTAX_ERROR"))


def test_a_typo_is_a_syntax_error_and_a_write_is_readonly() -> None:
    typo, write = refusal("SELEC 1"), refusal("INSERT INTO t VALUES (1)")
    assert typo is not None and (typo.code, typo.name) == (62, "SYNTAX_ERROR")
    assert write is not None and (write.code, write.name) == (164, "READONLY")


def test_the_format_a_statement_names() -> None:
    assert named_format("SELECT 1 FORMAT JSONEachRow") == "JSONEachRow"
    assert named_format("SELECT 'FORMAT CSV' AS f") is None
    assert named_format("SELECT 1 -- FORMAT CSV") is None
    assert named_format("SELECT 1") is None


RESTRICTED = frozenset({"audit_log", "principals"})


@pytest.mark.parametrize("sql", [
    "SELECT * FROM wxarchive.audit_log",
    "SELECT * FROM wxarchive.v_audit_log",
    "SELECT * FROM `wxarchive`.`V_PRINCIPALS`",
    "SELECT * FROM loop('wxarchive', 'audit_log') LIMIT 1",
    "SELECT * FROM loop(currentDatabase(), concat('aud', 'it_log')) LIMIT 1",
    "SELECT * FROM merge('wxarchive', '^a.dit')",
    "SELECT count() FROM system.tables WHERE name = 'principals'",
])
def test_a_restricted_table_is_not_reached_by_name_or_by_string(sql: str) -> None:
    assert touches(sql, RESTRICTED) is not None


def test_other_reads_do_not_touch_restricted_tables() -> None:
    assert touches("SELECT count() FROM wxarchive.v_messages WHERE text LIKE '%审计%'", RESTRICTED) is None
    assert touches("SELECT 'an audit' AS x", RESTRICTED) is None
