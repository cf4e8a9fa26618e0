"""`wxarchive sql`: read-only queries against the archive from the command line, with clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def wxarchive(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WXARCHIVE_DATA_DIR": str(tmp_path / "var")}
    return subprocess.run([sys.executable, "-m", "wxarchive.cli", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=120)


def test_queries_answer_and_writes_are_refused(tmp_path: Path) -> None:
    assert wxarchive(tmp_path, "migrate").returncode == 0
    done = wxarchive(tmp_path, "sql", "SELECT name FROM system.tables WHERE database = 'wxarchive' AND name = 'v_messages'",
                     "--format", "TSV")
    assert (done.returncode, done.stdout) == (0, "v_messages\n"), done.stderr
    piped = wxarchive(tmp_path, "sql", "--format", "CSVWithNames", stdin="SELECT count() AS n FROM wxarchive.v_messages;\n")
    assert piped.stdout == '"n"\n0\n', piped.stderr

    refused = wxarchive(tmp_path, "sql", "DROP TABLE wxarchive.messages")
    assert refused.returncode != 0 and "readonly mode" in refused.stderr and "Traceback" not in refused.stderr
    assert wxarchive(tmp_path, "sql", "SELECT count() FROM wxarchive.messages", "--format", "TSV").stdout == "0\n"

    typo = wxarchive(tmp_path, "sql", "SELEC 1")
    assert typo.returncode != 0 and "Syntax error" in typo.stderr and len(typo.stderr.strip().splitlines()) == 1
    empty = wxarchive(tmp_path, "sql", stdin="  \n")
    assert empty.returncode != 0 and "no query given" in empty.stderr
