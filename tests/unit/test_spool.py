"""The edge's durable spool: order, crash recovery, torn tails, group commit, its size limit, and (issue 10)
failed writes, kill -9, damaged bytes and the upgrade from the old format, none losing an acknowledged record."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings, strategies as st

import ingest.spool as spool_module
from ingest.records import OutRecord
from ingest.spool import Spool, SpoolBatch, SpoolFull
from tests.unit.spool_child import rec, record_id


async def drain_all(spool: Spool, batches: list[SpoolBatch] | None = None) -> list[OutRecord]:
    out: list[OutRecord] = []
    while spool.pending:
        batch = await spool.read_batch(limit=7)
        if batches is not None:
            batches.append(batch)
        out.extend(batch.records)
        await spool.commit(batch.end, len(batch.records))
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
        batch = await spool.read_batch(limit=4)
        await spool.commit(batch.end, len(batch.records))
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
    syncs: list[int] = []
    real_fsync = os.fsync

    def counted_fsync(fd: int) -> None:
        syncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counted_fsync)  # the one os module, which ingest.spool calls

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
        batch = await spool.read_batch()
        # the drain commits (which may empty the log) while new callbacks are being spooled
        await asyncio.gather(spool.commit(batch.end, len(batch.records)), *(spool.append(rec(i)) for i in range(5, 30)))
        await spool.close()
        again = Spool(tmp_path)
        again.open()
        return await drain_all(again)

    assert sorted(r.value for r in asyncio.run(scenario())) == sorted(rec(i).value for i in range(5, 30))


# -- issue 10: a failed write loses nothing acknowledged, damaged bytes cost only themselves ------------------

ROOT = Path(__file__).resolve().parents[2]


def ids(records: list[OutRecord]) -> list[int]:
    return [record_id(r) for r in records]


async def check_reopened(directory: Path, acked: list[int], clean: bool = True, unprinted: bool = False) -> None:
    """A fresh spool over `directory` reads every acknowledged record once, in order, and takes appends again.
    `clean`: the log holds no torn or damaged bytes (open cuts and skips nothing). `unprinted`: records whose
    acknowledgement the writer had no time to report may follow the acknowledged ones."""
    log = directory / "spool.log"
    size = log.stat().st_size
    spool = Spool(directory)
    waiting = spool.open()
    if clean:
        assert log.stat().st_size == size and spool.corrupt_bytes_total == 0
    got = ids(await drain_all(spool))
    assert waiting == len(got)
    assert got[:len(acked)] == acked and got == sorted(set(got))
    if not unprinted:
        assert got == acked
    await spool.append(rec(10_000))
    assert ids(await drain_all(spool)) == [10_000]
    await spool.close()


class Disk:
    """The spool log's disk, failing as told: os.write, os.fsync and os.ftruncate on `spool.log` go through
    here, every other file straight through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tear_next = False  # the next write to the log writes half its bytes; the one after it, ENOSPC
        self.limit: int | None = None  # the log cannot grow beyond this: a write is cut short, then ENOSPC
        self.fsync_errors = 0  # the next n fsyncs of the log fail with EIO
        self.ftruncate_errors = 0  # the next n ftruncates of the log fail with EIO
        self._torn = False
        self._write, self._fsync, self._ftruncate = os.write, os.fsync, os.ftruncate
        monkeypatch.setattr(os, "write", self.write)  # the one os module, which ingest.spool calls
        monkeypatch.setattr(os, "fsync", self.fsync)
        monkeypatch.setattr(os, "ftruncate", self.ftruncate)

    @staticmethod
    def _is_log(fd: int) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{fd}").endswith("/spool.log")
        except OSError:
            return False

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if not self._is_log(fd):
            return self._write(fd, data)
        if self._torn:
            self._torn = False
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self.tear_next:
            self.tear_next, self._torn = False, True
            return self._write(fd, data[:len(data) // 2])
        if self.limit is not None:
            room = self.limit - os.fstat(fd).st_size
            if room <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self._write(fd, data[:room])
        return self._write(fd, data)

    def fsync(self, fd: int) -> None:
        if self.fsync_errors and self._is_log(fd):
            self.fsync_errors -= 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self._fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        if self.ftruncate_errors and self._is_log(fd):
            self.ftruncate_errors -= 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self._ftruncate(fd, length)


async def append_group(spool: Spool, numbers: range, fails: int | None = None) -> list[int]:
    """Append concurrently (one group commit); returns the ids acknowledged. `fails`: the errno every append
    must fail with, or None for all to succeed."""
    results = await asyncio.gather(*(spool.append(rec(i)) for i in numbers), return_exceptions=True)
    if fails is None:
        assert results == [None] * len(numbers)
    else:
        assert [getattr(r, "errno", r) for r in results] == [fails] * len(numbers)
    return [i for i, r in zip(numbers, results) if r is None]


@pytest.mark.parametrize("fault", ["short write", "disk full", "fsync EIO", "cut back fails"])
def test_a_failing_disk_loses_nothing_acknowledged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   fault: str) -> None:
    """Issue 10 in small: the disk fails, then recovers; every append that returned is kept, once, in order,
    the log holds no torn bytes, the counters stay exact and later appends land where torn bytes were.
    `short write`: a batch write is cut short (half its bytes written), then ENOSPC; its appends raise.
    `disk full`: a real ENOSPC needs a full file system, which a test cannot make here, so os.write in the
    spool's module is replaced by one that lets the log grow only to a limit, cutting the write there and
    raising ENOSPC after, as a full disk does. `cut back fails`: ftruncate fails too, twice, so the torn bytes
    stay; the next batch must fail without writing after them, the one after it repairs the log first."""
    disk = Disk(monkeypatch)
    log = tmp_path / "spool.log"

    async def scenario() -> None:
        spool = Spool(tmp_path)
        spool.open()
        acked = await append_group(spool, range(4))
        size = log.stat().st_size
        if fault == "short write":
            disk.tear_next = True
            await append_group(spool, range(4, 8), fails=errno.ENOSPC)
            assert log.stat().st_size == size and spool.size_bytes == size and spool.pending == 4
        elif fault == "disk full":
            disk.limit = size + 3 * size // 8  # room for one frame and a half
            await append_group(spool, range(4, 8), fails=errno.ENOSPC)
            acked += await append_group(spool, range(8, 9))  # a single frame still fits
            await append_group(spool, range(9, 12), fails=errno.ENOSPC)
            disk.limit = None  # space comes back
        elif fault == "fsync EIO":
            disk.fsync_errors = 1
            await append_group(spool, range(4, 8), fails=errno.EIO)
        else:
            disk.tear_next, disk.ftruncate_errors = True, 2
            await append_group(spool, range(4, 8), fails=errno.ENOSPC)
            torn = log.stat().st_size
            assert torn > size
            await append_group(spool, range(8, 12), fails=errno.EIO)  # the repair fails: nothing is written
            assert log.stat().st_size == torn
        acked += await append_group(spool, range(12, 16))
        assert spool.pending == len(acked) and spool.size_bytes == log.stat().st_size
        batch = await spool.read_batch(limit=100)
        assert ids(batch.records) == acked and batch.skipped_bytes == 0 and batch.end == log.stat().st_size
        await spool.close()
        await check_reopened(tmp_path, acked)

    asyncio.run(scenario())


def test_an_append_whose_caller_went_away_does_not_stop_the_writer(tmp_path: Path) -> None:
    """A request cancelled while its append waits for the fsync: its record is written with the others (the
    sender had no 200 and sends it again; downstream removes the duplicate) and the other appends return."""
    async def scenario() -> None:
        spool = Spool(tmp_path)
        spool.open()
        tasks = [asyncio.create_task(spool.append(rec(i))) for i in range(4)]
        await asyncio.sleep(0)  # all four queued for one write
        tasks[0].cancel()
        await asyncio.wait_for(asyncio.gather(*tasks[1:]), 5)
        assert ids(await drain_all(spool)) == [0, 1, 2, 3]

    asyncio.run(scenario())


def child_lines(out: str) -> list[list[str]]:
    """The child's complete lines, split in words (a line cut off by a kill has no newline)."""
    return [line.split() for line in out.splitlines(keepends=True) if line.endswith("\n")]


def test_efbig_from_a_real_file_size_limit(tmp_path: Path) -> None:
    """A child process under RLIMIT_FSIZE: its writes past the limit are cut short and then fail with EFBIG,
    for real. Once the limit is lifted, appends succeed; the log holds exactly what was acknowledged."""
    done = subprocess.run([sys.executable, "-m", "tests.unit.spool_child", str(tmp_path), "fsize", "4000", "24", "8"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    lines = child_lines(done.stdout)
    raised = lines.index(["raised"])
    acked = [int(words[1]) for words in lines if words[0] == "acked"]
    failed = [words for words in lines[:raised] if words[0] == "failed"]
    assert acked and failed and {words[2] for words in failed} == {"EFBIG"}, done.stdout
    assert [int(words[1]) for words in lines[raised + 1:] if words[0] == "acked"] == list(range(24, 32))
    asyncio.run(check_reopened(tmp_path, acked))


def test_kill_9_mid_write_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    """A child appending as fast as it can is SIGKILLed: every id it reported acknowledged is there once, in
    order; a torn tail may be cut, and records acknowledged but not yet reported may follow."""
    child = subprocess.Popen([sys.executable, "-m", "tests.unit.spool_child", str(tmp_path), "loop"],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    acked: list[int] = []
    try:
        while len(acked) < 40:
            line = child.stdout.readline()
            assert line, "the child stopped before it was killed"
            acked += [int(line.split()[1])] if line.startswith("acked ") else []
        time.sleep(0.005)  # into the next write: the child writes slowly, so the kill most likely tears it
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    acked += [int(words[1]) for words in child_lines(child.stdout.read()) if words[0] == "acked"]
    child.stdout.close()
    asyncio.run(check_reopened(tmp_path, acked, clean=False, unprinted=True))


def write_log(directory: Path, count: int) -> list[int]:
    """Records 0..count-1 in a closed spool; returns the offset after each frame."""
    ends: list[int] = []

    async def scenario() -> None:
        spool = Spool(directory)
        spool.open()
        for i in range(count):
            await spool.append(rec(i))
            ends.append(spool.size_bytes)
        await spool.close()

    asyncio.run(scenario())
    return ends


def forged_header(meta_len: int, body_len: int) -> bytes:
    """A marker and a header whose CRC passes, claiming the given lengths."""
    fields = struct.pack(">III", meta_len, body_len, 0)
    return spool_module.MARKER + (fields + struct.pack(">I", zlib.crc32(fields))).hex().encode()


@pytest.mark.parametrize("damage", ["bytes inserted", "a byte flipped", "a torn frame", "a length changed"])
def test_damage_in_the_middle_costs_only_the_damaged_frame(tmp_path: Path, damage: str) -> None:
    """Damaged bytes between good frames: open keeps (and counts) every good frame after them and cuts nothing,
    and the drain steps over the damage, saying how many bytes it skipped."""
    ends = write_log(tmp_path, 10)
    log = tmp_path / "spool.log"
    data = bytearray(log.read_bytes())
    lost: list[int] = []
    if damage == "bytes inserted":
        garbage = (bytes(range(256)) + forged_header(10, 0xFFFFFF00) + forged_header(4, 20) + b"short"
                   + spool_module.MARKER + b"zz")  # a header claiming 4 GB, one claiming more than follows it
        data[ends[4]:ends[4]] = garbage
    elif damage == "a byte flipped":
        data[ends[4] + 60] ^= 0x01  # in frame 5's body
        lost = [5]
    elif damage == "a torn frame":  # as issue 10 left it: half a frame, the next appends after it
        del data[(ends[4] + ends[5]) // 2:ends[5]]
        lost = [5]
    else:
        data[ends[2] + 4 + 7] ^= 0x01  # a hex digit of frame 3's meta length
        lost = [3]
    log.write_bytes(bytes(data))
    expected = [i for i in range(10) if i not in lost]

    async def scenario() -> None:
        spool = Spool(tmp_path)
        assert spool.open() == len(expected)
        assert log.stat().st_size == len(data)
        kept = sum(end - start for i, (start, end) in enumerate(zip([0] + ends, ends)) if i not in lost)
        damaged = len(data) - kept
        assert spool.corrupt_bytes_total == damaged > 0
        batches: list[SpoolBatch] = []
        assert ids(await drain_all(spool, batches)) == expected
        assert sum(b.skipped_bytes for b in batches) == damaged
        assert spool.corrupt_bytes_total == damaged  # the drain stepped over what open counted: not counted again
        await spool.close()
        await check_reopened(tmp_path, [])

    asyncio.run(scenario())


def test_damage_the_drain_meets_last_is_committed_past(tmp_path: Path) -> None:
    """A frame damaged after it was acknowledged, at the end of the log: the drain gets a batch of skipped
    bytes alone, whose `end` it commits, so it never stalls and `pending` comes back to 0."""
    log = tmp_path / "spool.log"

    async def scenario() -> None:
        spool = Spool(tmp_path)
        spool.open()
        for i in range(3):
            await spool.append(rec(i))
        size = log.stat().st_size
        last = len(spool_module._encode(rec(2)))
        with open(log, "r+b") as damaged:
            damaged.seek(size - 5)
            damaged.write(b"\x00")
        first = await spool.read_batch()
        assert ids(first.records) == [0, 1] and first.skipped_bytes == 0 and first.end == size - last
        await spool.commit(first.end, 2)
        rest = await spool.read_batch()
        assert rest.records == [] and rest.skipped_bytes == last and rest.end == size
        again = await spool.read_batch()  # read again before the commit: the same bytes, not counted twice
        assert again == rest and spool.corrupt_bytes_total == last
        await spool.commit(rest.end, 0)
        assert spool.pending == 0 and spool.size_bytes == 0 and log.stat().st_size == 0
        await spool.append(rec(3))
        assert ids(await drain_all(spool)) == [3]

    asyncio.run(scenario())


def old_encode(record: OutRecord) -> bytes:
    """A frame as ingest/spool.py wrote it before issue 10: three u32 (meta length, value length, crc32)."""
    meta = orjson.dumps([record.topic, record.key.decode("latin-1"),
                         [[k, v.decode("latin-1")] for k, v in record.headers]])
    return struct.pack(">III", len(meta), len(record.value), zlib.crc32(meta + record.value)) + meta + record.value


def test_a_log_in_the_old_format_is_upgraded(tmp_path: Path) -> None:
    """A spool.log written before the upgrade, partly drained and damaged as issue 10 left logs (a torn frame
    with good frames after it, a torn tail): its records not yet drained survive, in order, in the new format."""
    frames = [old_encode(rec(i)) for i in range(9)]
    torn = frames[4][:len(frames[4]) // 2]  # a failed append the old code left behind
    log = tmp_path / "spool.log"
    log.write_bytes(b"".join(frames[:4]) + torn + b"".join(frames[5:8]) + frames[8][:7])
    (tmp_path / "spool.pos").write_text(f"{len(frames[0]) + len(frames[1])}\n")  # 0 and 1 were drained

    async def scenario() -> None:
        spool = Spool(tmp_path)
        assert spool.open() == 5
        assert log.read_bytes().startswith(spool_module.MARKER)
        assert (tmp_path / "spool.pos").read_text() == "0\n" and not (tmp_path / "spool.log.v2").exists()
        await spool.append(rec(9))
        await spool.close()
        await check_reopened(tmp_path, [2, 3, 5, 6, 7, 9])

    asyncio.run(scenario())


def test_a_value_holding_a_frame_is_never_taken_for_one(tmp_path: Path) -> None:
    """Callback bodies come from outside. A value carrying a whole well-formed frame (here: one for another
    topic) stays inside its record, and a torn copy of that record, in the middle or at the end, does not
    bring the inner frame to life: a marker cannot occur inside a frame."""
    inner = OutRecord("wxarchive.principals", b"admin", b'{"role":"admin"}', ())
    carrier = dataclasses.replace(rec(1), value=b'{"n":1}' + spool_module._encode(inner) + b"...")
    whole = spool_module._encode(carrier)
    good = [spool_module._encode(rec(i)) for i in (0, 2)]
    log = tmp_path / "spool.log"

    async def read(content: bytes) -> tuple[list[OutRecord], int]:
        """The records a spool over `content` drains, and the log's size after open."""
        log.write_bytes(content)
        spool = Spool(tmp_path)
        spool.open()
        size = log.stat().st_size
        records = await drain_all(spool)
        await spool.close()
        return records, size

    assert asyncio.run(read(good[0] + whole + good[1])) == ([rec(0), carrier, rec(2)], len(good[0] + whole + good[1]))
    assert asyncio.run(read(good[0] + whole[:-2] + good[1])) == ([rec(0), rec(2)], len(good[0] + whole[:-2] + good[1]))
    assert asyncio.run(read(good[0] + whole[:-2])) == ([rec(0)], len(good[0]))  # a torn tail: cut


_PIECES = st.one_of(st.binary(max_size=8), st.sampled_from([b"\xff", b"\xff\x00", spool_module.MARKER]))


@settings(max_examples=60, deadline=None, database=None)
@given(values=st.lists(st.lists(_PIECES, max_size=6).map(b"".join), min_size=1, max_size=8),
       damages=st.lists(st.tuples(st.booleans(), st.integers(min_value=0), st.binary(min_size=1, max_size=48)),
                        max_size=3))
def test_any_damage_costs_only_the_frames_it_touches(values: list[bytes],
                                                     damages: list[tuple[bool, int, bytes]]) -> None:
    """Random bytes written over, or inserted into, a log of random records: exactly the frames whose bytes
    are intact are read back, in order; nothing raises."""
    records = [OutRecord("t", str(i).encode(), value, ()) for i, value in enumerate(values)]
    frames = [spool_module._encode(r) for r in records]
    data = bytearray(b"".join(frames))
    spans = [[sum(map(len, frames[:i])), sum(map(len, frames[:i + 1]))] for i in range(len(frames))]
    for insert, where, garbage in damages:
        at = where % (len(data) + 1)
        if insert:
            data[at:at] = garbage
            for span in spans:
                if span[0] < at < span[1]:
                    span[1] = -1  # split: lost
                elif span[0] >= at and span[1] >= 0:
                    span[0], span[1] = span[0] + len(garbage), span[1] + len(garbage)
        else:
            data[at:at + len(garbage)] = garbage
    expected = [r for r, frame, (start, end) in zip(records, frames, spans) if data[start:end] == frame]

    async def scenario(directory: Path) -> list[OutRecord]:
        (directory / "spool.log").write_bytes(bytes(data))
        spool = Spool(directory)
        assert spool.open() == len(expected)
        return await drain_all(spool)

    with tempfile.TemporaryDirectory() as directory:
        assert asyncio.run(scenario(Path(directory))) == expected
