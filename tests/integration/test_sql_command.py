"""`wxarchive sql`: read-only queries against the archive from the command line, with clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def wxarchive(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WXARCHIVE_DATA_DIR": str(tmp_path / "var")}
    return subprocess.run([sys.executable, "-m", "commands", *args], env=env, input=stdin, capture_output=True,
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


HOLDER = """
import sys
from wxarchive.clickhouse import open_client
client = open_client(sys.argv[1])
print("open", flush=True)
sys.stdin.read()  # hold the directory until the test closes our standard input
client.close()
"""


def test_a_held_directory_gets_one_line_naming_its_owner(tmp_path: Path) -> None:
    """While another process (`wxarchive up`, the sink) owns the embedded ClickHouse, `sql` says so in one line:
    the engine's own "Code: 76 … Cannot lock file" line, which it prints itself, must not come first."""
    path = tmp_path / "var" / "clickhouse"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, f"chdb://{path}"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        done = wxarchive(tmp_path, "sql", "SELECT 1")
    finally:
        holder.communicate(timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (f"wxarchive: error: the embedded ClickHouse at {path} is in use by process {holder.pid}: "
                           "chdb allows one process per directory, so read through that process (in embedded mode, "
                           "the sink) or stop it first\n")
    # once the owner has gone, the same command answers
    again = wxarchive(tmp_path, "sql", "SELECT 1", "--format", "TSV")
    assert (again.returncode, again.stdout, again.stderr) == (0, "1\n", "")


TICKER = """
import os, sys, threading, time
from wxarchive.clickhouse import open_client
stop, opening, during = threading.Event(), threading.Event(), []
def tick():
    n = 0
    while not stop.is_set():
        os.write(2, f"tick {n}\\n".encode())
        if opening.is_set():
            during.append(n)
        n += 1
        time.sleep(0.002)
ticker = threading.Thread(target=tick)
ticker.start()
time.sleep(0.05)
opening.set()
client = open_client(sys.argv[1])
opening.clear()
time.sleep(0.05)
stop.set()
ticker.join()
client.close()
print(len(during))
"""


def test_holding_back_the_engines_stderr_loses_no_other_output(tmp_path: Path) -> None:
    """The open holds file descriptor 2 back while the engine starts; what other threads (the sink's logging)
    write meanwhile still reaches stderr."""
    done = subprocess.run([sys.executable, "-c", TICKER, f"chdb://{tmp_path / 'clickhouse'}"], capture_output=True,
                          text=True, cwd=Path(__file__).parents[2], timeout=120)
    assert done.returncode == 0, done.stderr
    ticks = sorted(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("tick "))
    assert int(done.stdout) > 0, "no line was written while the engine opened"
    assert ticks == list(range(len(ticks)))
