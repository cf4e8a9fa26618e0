"""The API's conversation list and transcript over a large archive at 16 concurrent clients (issue 13, benchmark c).

    .venv/bin/python benchmarks/api_conversations.py [--messages 5000000] [--conversations 100000]
        [--clients 16] [--seconds 30]

An archive of `--messages` generated chat messages over `--conversations` conversations of 20 accounts (the
`messages` table as migrated, so `last_messages` is filled by its materialized view), served by a door in a
process of its own as the sink serves it; `wxarchive api` in another process, reading through the door and
auditing every request to a local broker, as `up` runs it. Then `--clients` clients, each with its own
connection and a viewer token, request in turn a random account's conversation list (first page of 50, and the
next page by its cursor) and a random conversation's transcript (latest 50, and the page before it), for
`--seconds`. Latency per route from the client, p50 and p99; the baseline in the same run is the same queries'
SQL run directly through the door by the same number of clients, so what the API adds (auth, audit, JSON) shows.
Target: p99 at most 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from wxarchive.net import free_ports  # noqa: E402

ACCOUNTS = 20


def fill(data_dir: Path, messages: int, conversations: int) -> None:
    from sinks.schema import migrate
    from wxarchive.clickhouse import open_client

    client = open_client(f"chdb://{data_dir / 'clickhouse'}")
    try:
        migrate(client)
        step = 1_000_000
        for start in range(0, messages, step):
            client.command(f"""
                INSERT INTO wxarchive.messages (account, identity, new_msg_id, type_code, type_name, is_group,
                    conversation, conversation_name, sender, sender_name, time, text, enriched, received_at)
                SELECT concat('wxid_acct', toString(c % {ACCOUNTS})), toString(number), number, '80001', 'text',
                       c % 3 != 0, if(c % 3 != 0, concat(toString(c), '@chatroom'), concat('wxid_peer', toString(c))),
                       concat('群 ', toString(c)), concat('wxid_u', toString(cityHash64(number) % 50000)), '张三',
                       toDateTime64('2026-01-01 00:00:00', 3, 'Asia/Shanghai') + toIntervalSecond(number * 3),
                       concat('消息 ', toString(number)), 1, now64(3)
                FROM (SELECT number, cityHash64(number, 7) % {conversations} AS c FROM numbers({start},
                      {min(step, messages - start)}))""", settings={"max_insert_threads": 1})
        client.command("OPTIMIZE TABLE wxarchive.messages FINAL")
        client.command("OPTIMIZE TABLE wxarchive.last_messages FINAL")
    finally:
        client.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load(clients: int, seconds: float, one_request: Callable[[random.Random], list[tuple[str, float]]]
         ) -> dict[str, list[float]]:
    """`clients` threads calling `one_request(rng)` -> (route, seconds) until the time is up."""
    latencies: dict[str, list[float]] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run(n: int) -> None:
        rng = random.Random(n)
        while time.monotonic() < deadline:
            for route, took in one_request(rng):
                with lock:
                    latencies.setdefault(route, []).append(took)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def engine_costs(door_url: str, conversations: int) -> list[tuple[str, float]]:
    """One client, no queueing: the best of 7 of each of the API's two queries as the API runs them (its own
    functions, through the door), beside the plain SQL of the same page: what the figures in docs/api.md say."""
    import asyncio

    import clickhouse_connect

    from api.clickhouse import ArchiveReader
    from api.conversations import ConversationQuery, conversation_page, transcript

    c = 12347 % conversations
    account, conversation = f"wxid_acct{c % ACCOUNTS}", f"{c}@chatroom" if c % 3 else f"wxid_peer{c}"
    client = clickhouse_connect.get_client(dsn=door_url, autogenerate_session_id=False, compress=False)
    reader = ArchiveReader(lambda: door_url, threads=1)

    def best(run: Callable[[], object]) -> float:
        times = []
        for _ in range(7):
            began = time.perf_counter()
            run()
            times.append(time.perf_counter() - began)
        return min(times)

    plain_list = ("SELECT conversation, is_group, last_time, message_count FROM wxarchive.v_last_messages "
                  "WHERE account = {a:String} ORDER BY last_time DESC, conversation LIMIT 50")
    final_page = ("SELECT * FROM wxarchive.v_messages WHERE account = {a:String} AND conversation = {c:String} "
                  "ORDER BY time DESC, identity DESC LIMIT 51")
    try:
        return [
            ("conversation list, plain SQL", best(lambda: client.query(plain_list, parameters={"a": account}))),
            ("conversation list, the API's query",
             best(lambda: asyncio.run(conversation_page(reader, ConversationQuery(account, "", "", None, 50))))),
            ("transcript page through v_messages (FINAL)",
             best(lambda: client.query(final_page, parameters={"a": account, "c": conversation}))),
            ("transcript page, the API's query",
             best(lambda: asyncio.run(transcript(reader, account, conversation, limit=50)))),
        ]
    finally:
        reader.close()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5_000_000)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()

    from access.roles import Role
    from access.token_admin import create_token
    from wxarchive.config import Settings

    from timing import start_pinned_broker

    work = Path(tempfile.mkdtemp(prefix="api-bench-"))
    data = work / "var"
    started = time.perf_counter()
    fill(data, args.messages, args.conversations)
    print(f"archive: {args.messages:,} messages over {args.conversations:,} conversations of {ACCOUNTS} accounts, "
          f"built in {time.perf_counter() - started:.0f}s", flush=True)
    broker = start_pinned_broker(work / "kafka")
    door_port, api_port = free_ports(2)
    env = {**os.environ, "WXARCHIVE_DATA_DIR": str(data), "WXARCHIVE_KAFKA_BOOTSTRAP": broker.spec.bootstrap,
           "WXARCHIVE_DOOR_PORT": str(door_port), "WXARCHIVE_API_PORT": str(api_port),
           "WXARCHIVE_TOPIC_PREFIX": "apibench", "WXARCHIVE_LOG_LEVEL": "warning"}
    settings = Settings.load(env={k: v for k, v in env.items() if k.startswith("WXARCHIVE_")})
    door = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "door_throughput.py"), "--child", "door",
                             "--data-dir", str(data), "--port", str(door_port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    api = None
    try:
        assert door.stdout is not None
        door_url = door.stdout.readline().strip()
        if not door_url:
            raise SystemExit("the door did not start")
        import asyncio

        from access.audit import AuditLog
        from access.caller import Caller

        async def token() -> str:
            audit = AuditLog(settings)
            await audit.start()
            try:
                made, _ = await create_token(settings, "bench", Role.VIEWER, Caller.cli(), audit)
                return made
            finally:
                await audit.close()

        bearer = asyncio.run(token())
        api = subprocess.Popen([sys.executable, "-m", "commands", "api"], env=env, cwd=ROOT)
        base = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{base}/readyz", timeout=2).status == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API did not become ready")
            time.sleep(0.5)

        def get(path: str) -> tuple[float, dict[str, object]]:
            request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {bearer}"})
            began = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                body = json.loads(response.read())
            return time.perf_counter() - began, body

        def through_api(rng: random.Random) -> list[tuple[str, float]]:
            account = f"wxid_acct{rng.randrange(ACCOUNTS)}"
            took, page = get(f"/api/v1/accounts/{account}/conversations?limit=50")
            out = [("conversation list, first page", took)]
            cursor = page.get("next_cursor")
            if cursor:
                took, _ = get(f"/api/v1/accounts/{account}/conversations?limit=50&cursor={cursor}")
                out.append(("conversation list, next page", took))
            c = rng.randrange(args.conversations)
            account = f"wxid_acct{c % ACCOUNTS}"
            conversation = f"{c}@chatroom" if c % 3 else f"wxid_peer{c}"
            took, page = get(f"/api/v1/accounts/{account}/conversations/{conversation}/messages?limit=50")
            out.append(("transcript, latest 50", took))
            cursor = page.get("before_cursor")
            if cursor:
                took, _ = get(f"/api/v1/accounts/{account}/conversations/{conversation}/messages?limit=50"
                              f"&before={cursor}")
                out.append(("transcript, the page before", took))
            return out

        import clickhouse_connect

        local = threading.local()

        def through_door(rng: random.Random) -> list[tuple[str, float]]:
            if not hasattr(local, "client"):
                local.client = clickhouse_connect.get_client(dsn=door_url, autogenerate_session_id=False,
                                                             compress=False)
            account = f"wxid_acct{rng.randrange(ACCOUNTS)}"
            began = time.perf_counter()
            local.client.query("SELECT conversation, is_group, last_time, message_count FROM wxarchive.v_last_messages "
                               "WHERE account = {a:String} ORDER BY last_time DESC, conversation LIMIT 50",
                               parameters={"a": account})
            out = [("SQL: conversation list", time.perf_counter() - began)]
            c = rng.randrange(args.conversations)
            began = time.perf_counter()
            local.client.query("SELECT identity, time, sender, text FROM wxarchive.v_messages WHERE account = {a:String} "
                               "AND conversation = {c:String} ORDER BY time DESC, identity DESC LIMIT 50",
                               parameters={"a": f"wxid_acct{c % ACCOUNTS}",
                                           "c": f"{c}@chatroom" if c % 3 else f"wxid_peer{c}"})
            out.append(("SQL: transcript", time.perf_counter() - began))
            return out

        get("/api/v1/accounts")  # warm
        costs = engine_costs(door_url, args.conversations)
        results = {"api": load(args.clients, args.seconds, through_api),
                   "door": load(args.clients, args.seconds, through_door)}
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=30)
        if door.stdin is not None:
            door.stdin.close()
        door.wait(timeout=60)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"{args.clients} concurrent clients for {args.seconds:g}s each; latency from the client")
    print(f"{'request':<34} {'count':>7} {'per s':>7} {'p50 ms':>8} {'p99 ms':>8}")
    worst = 0.0
    for kind, latencies in results.items():
        for route, values in latencies.items():
            p99 = percentile(values, 0.99)
            if kind == "api":
                worst = max(worst, p99)
            print(f"{route:<34} {len(values):>7,} {len(values) / args.seconds:>7.1f} "
                  f"{statistics.median(values) * 1000:>8.1f} {p99 * 1000:>8.1f}")
    print("one client, best of 7, through the door:")
    for label, seconds in costs:
        print(f"  {label:<44} {seconds * 1000:>7.1f} ms")
    print(f"worst API p99 {worst * 1000:.1f} ms (target <= 100 ms: {'met' if worst <= 0.1 else 'MISSED'})")


if __name__ == "__main__":
    main()
