"""The edge's durable spool: order, crash recovery, torn tails, group commit, its size limit."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import ingest.spool as spool_module
from ingest.records import OutRecord
from ingest.spool import Spool, SpoolFull


def rec(i: int, topic: str = "wx.raw") -> OutRecord:
    return OutRecord(topic, f"wxid_a|peer{i % 3}".encode(), f'{{"n":{i}}}'.encode() + bytes([0xFF, 0, i % 256]),
                     (("wx-received-at", b"1700000000000"), ("wx-edge", "边缘".encode())))


async def drain_all(spool: Spool) -> list[OutRecord]:
    out: list[OutRecord] = []
    while spool.pending:
        records, end = await spool.read_batch(limit=7)
        out.extend(records)
        await spool.commit(end, len(records))
    return out


def test_round_trip_in_order_and_empties(tmp_path: Path) -> None:
    async def scenario() -> None:
        spool = Spool(tmp_path)
        assert spool.open() == 0
        for i in range(20):
            await spool.append(rec(i))
        assert spool.pending == 20
        assert await drain_all(spool) == [rec(i) for i in range(20)]  # bytes, keys, headers, order all kept
        assert spool.pending == 0 and spool.size_bytes == 0
        assert (tmp_path / "spool.log").stat().st_size == 0  # emptied, not growing forever
        await spool.close()

    asyncio.run(scenario())


def test_a_restart_finds_what_was_not_drained(tmp_path: Path) -> None:
    async def first_run() -> None:
        spool = Spool(tmp_path)
        spool.open()
        for i in range(10):
            await spool.append(rec(i))
        records, end = await spool.read_batch(limit=4)
        await spool.commit(end, len(records))
        # no close(): the process dies here

    async def second_run() -> list[OutRecord]:
        spool = Spool(tmp_path)
        assert spool.open() == 6
        return await drain_all(spool)

    asyncio.run(first_run())
    assert asyncio.run(second_run()) == [rec(i) for i in range(4, 10)]


def test_a_torn_tail_is_cut_off(tmp_path: Path) -> None:
    async def write() -> None:
        spool = Spool(tmp_path)
        spool.open()
        for i in range(3):
            await spool.append(rec(i))
        await spool.close()

    asyncio.run(write())
    good_size = (tmp_path / "spool.log").stat().st_size
    with open(tmp_path / "spool.log", "ab") as log:
        log.write(b"\x00\x00\x00\x40\x00\x00")  # half a frame header: the edge died mid-write, before answering

    async def recover() -> list[OutRecord]:
        spool = Spool(tmp_path)
        assert spool.open() == 3
        assert (tmp_path / "spool.log").stat().st_size == good_size
        await spool.append(rec(3))  # appends continue after the cut
        return await drain_all(spool)

    assert asyncio.run(recover()) == [rec(i) for i in range(4)]


def test_position_beyond_the_log_after_a_crash_mid_reset(tmp_path: Path) -> None:
    (tmp_path / "spool.log").write_bytes(b"")
    (tmp_path / "spool.pos").write_text("4096\n")  # died after emptying the log, before moving the position

    async def scenario() -> list[OutRecord]:
        spool = Spool(tmp_path)
        assert spool.open() == 0
        await spool.append(rec(1))
        return await drain_all(spool)

    assert asyncio.run(scenario()) == [rec(1)]


def test_concurrent_appends_share_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(spool_module.os, "fsync", lambda fd: (syncs.append(fd), real_fsync(fd))[1])

    async def scenario() -> None:
        spool = Spool(tmp_path)
        spool.open()
        await asyncio.gather(*(spool.append(rec(i)) for i in range(200)))
        assert spool.pending == 200
        assert sorted(r.value for r in await drain_all(spool)) == sorted(rec(i).value for i in range(200))

    asyncio.run(scenario())
    appends_syncs = len(syncs)
    assert appends_syncs < 50  # group commit: far fewer fsyncs than appends (drain commits add a few)


def test_the_size_limit_refuses_then_frees(tmp_path: Path) -> None:
    async def scenario() -> None:
        spool = Spool(tmp_path, max_bytes=600)
        spool.open()
        accepted = 0
        with pytest.raises(SpoolFull, match="limit is 600"):
            for i in range(100):
                await spool.append(rec(i))
                accepted += 1
        assert 0 < accepted < 100 and spool.pending == accepted
        await drain_all(spool)
        await spool.append(rec(0))  # room again

    asyncio.run(scenario())


def test_appends_during_a_drain_commit_are_kept(tmp_path: Path) -> None:
    async def scenario() -> list[OutRecord]:
        spool = Spool(tmp_path)
        spool.open()
        for i in range(5):
            await spool.append(rec(i))
        records, end = await spool.read_batch()
        # the drain commits (which may empty the log) while new callbacks are being spooled
        await asyncio.gather(spool.commit(end, len(records)), *(spool.append(rec(i)) for i in range(5, 30)))
        await spool.close()
        again = Spool(tmp_path)
        again.open()
        return await drain_all(again)

    assert sorted(r.value for r in asyncio.run(scenario())) == sorted(rec(i).value for i in range(5, 30))
