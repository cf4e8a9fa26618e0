"""A durable local spool: callbacks accepted while Kafka is down, kept on disk in arrival order.

Why. `append` returns only after the record is fsync'ed, so a 200 answered after it survives a crash of the
edge (DESIGN invariant 1). Concurrent appends share one write and one fsync (group commit): during an
outage many requests arrive at once, and one fsync per request would cap the edge at the disk's sync rate.
Issue 10: with the disk full, a failed write left a torn frame in the log, later appends landed after it,
the reader lost its way and a restart cut every good frame after the tear. So a failed write is undone,
and the format lets a reader step over bad bytes to the next good frame.

Format (version 2, `spool.log`): a sequence of frames, each

    marker   4 bytes   FF 57 58 32 ("\\xffWX2")
    header  32 bytes   hex digits of four big-endian u32: meta length, body length, crc32(meta + value),
                       and crc32 of the first three (the header CRC covers the lengths)
    body               meta + value with every FF byte written as FF 00

`meta` is JSON: [topic, key, [[header, value], ...]] (bytes as latin-1). Because FF in a body is always
followed by 00 and the header is hex, the marker can never occur inside a frame: a marker is either where a
frame starts or in damaged bytes, never in the middle of a good frame. So a reader that meets bad bytes
finds the next frame with one search and cannot be fooled by a record whose value holds a frame (a callback
body is attacker-influenced; with plain length-prefixed frames a torn frame carrying a well-formed frame in
its value would have been "recovered" as a record of the sender's choosing).

The checksum is zlib's crc32. Its job is to recognise torn writes and media damage: CRC-32 catches every
burst up to 32 bits and misses random damage with odds 2^-32, and a frame must pass two of them (header and
body) behind a marker. CRC-32C would be a new dependency for no gain here; a cryptographic hash only helps
against forgery, which the escaping rules out instead. Escaping costs one byte per FF in a value (UTF-8 JSON,
what E云 sends, has none) and one C-speed pass over each record.

Writing. A batch is written and fsync'ed as one; after any error (a short write then ENOSPC, EFBIG from a
file size limit, EIO from write or fsync) the log is cut back to where the batch started and every append in
it fails (the caller answers 503). If that cut fails too, the log is marked dirty: every later batch first
retries the cut, and fails without writing while it cannot make it, so an append never lands after torn
bytes. The counters (`pending`, `size_bytes`) are rolled back with the failed batch. An append whose caller
was cancelled is written all the same (the sender got no 200 and sends it again; downstream dedupes).

Recovery (`open`). Frames are checked from the drain position to the end of the log. Damaged bytes between
good frames are kept and stepped over (`corrupt_bytes_total` counts them); only bytes after the last good
frame (a torn tail: the edge died mid-write, before it answered) are cut off. A length from a header is
trusted only once the header CRC passes, and never beyond the bytes present or `max(max_bytes, 64 MiB)`.
Upgrade: a log in the format before version 2 (u32 meta length, u32 value length, u32 crc32, payload; no
marker, never starting with FF) is recognised by holding old frames and no new one. Its records from the
drain position are written to `spool.log.v2` and fsync'ed, `spool.pos` is set to 0, and the new file is
renamed over the old (a crash before the rename re-sends, never skips). With no marker to search for, the
old reader tries every offset after a bad frame, so the good frames issue 10 left behind a torn one survive.

Draining. `read_batch` returns the next records and the offset after each. Damaged bytes before the first
record are skipped and reported in the batch (`skipped_bytes`); damaged bytes after a record start the next
batch, so `end` is `ends[-1]` whenever there are records. A batch of damaged bytes alone has no records and
an `end` past them: the caller commits it with `commit(end, 0)`, so the drain never stalls on garbage.
`spool.pos` records how far the spool has been drained to Kafka; it is advanced only after Kafka
acknowledged, so a crash while draining re-sends (a duplicate downstream removes), never skips. Once all is
drained the log is emptied: `spool.pos` is set to 0 first, so a crash in between re-sends, never skips.
Reads and commits are serialised (a commit may empty the log under a read); a cancelled read or commit
still completes in the background, so a cancellation cannot leave half a commit.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import errno
import functools
import mmap
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from ingest.records import OutRecord
from wxarchive.errors import WxarchiveError

__all__ = ["MARKER", "Spool", "SpoolBatch", "SpoolFull"]

MARKER = b"\xffWX2"
_U32 = struct.Struct(">I")
_U32X3 = struct.Struct(">III")  # version 2: meta length, body length, body CRC; before it: the whole frame header
_HEADER = 2 * (_U32X3.size + _U32.size)  # the header's hex digits
_FRAME_CAP_FLOOR = 64 << 20  # far above any record the edge makes: lowering max_bytes never orphans a frame

_Buffer = bytes | mmap.mmap
_FrameAt = Callable[[_Buffer, int, int, int], "tuple[int, OutRecord] | None"]


class SpoolFull(WxarchiveError):
    """The spool reached its size limit; the edge answers 503 again rather than fill the disk."""

    http_status = 503


@dataclass(frozen=True)
class SpoolBatch:
    """Records read from the drain position `start`, in order."""

    records: list[OutRecord]
    ends: list[int]  # offset just past each record: commit(ends[i], i + 1) drains records[: i + 1]
    skipped_bytes: int  # damaged bytes stepped over before the first record (or instead of any)
    start: int  # the drain position this batch was read from

    @property
    def end(self) -> int:
        """Where the next batch starts: commit(end, len(records)) drains the batch, skipped bytes included."""
        return self.ends[-1] if self.ends else self.start + self.skipped_bytes


# -- the frame format ------------------------------------------------------------------------------------


def _encode(record: OutRecord) -> bytes:
    meta = orjson.dumps([record.topic, record.key.decode("latin-1"),
                         [[k, v.decode("latin-1")] for k, v in record.headers]])
    payload = meta + record.value
    body = payload.replace(b"\xff", b"\xff\x00")
    fields = _U32X3.pack(len(meta), len(body), zlib.crc32(payload))
    return MARKER + (fields + _U32.pack(zlib.crc32(fields))).hex().encode() + body


def _decode(meta: bytes, value: bytes) -> OutRecord | None:
    try:
        topic, key, headers = orjson.loads(meta)
        return OutRecord(topic, key.encode("latin-1"), value, tuple((k, v.encode("latin-1")) for k, v in headers))
    except (ValueError, TypeError, AttributeError):
        return None  # checksums passed but the meta is not ours: damaged all the same


def _frame_at(buf: _Buffer, at: int, end: int, cap: int) -> tuple[int, OutRecord] | None:
    """The good version-2 frame whose marker is at `at`: where it ends and its record; None if it is damaged."""
    body_at = at + len(MARKER) + _HEADER
    if body_at > end:
        return None
    try:
        header = binascii.unhexlify(buf[at + len(MARKER):body_at])
    except binascii.Error:
        return None
    fields, (header_crc,) = header[:_U32X3.size], _U32.unpack(header[_U32X3.size:])
    meta_len, body_len, payload_crc = _U32X3.unpack(fields)
    if zlib.crc32(fields) != header_crc or body_len > min(cap, end - body_at):
        return None
    payload = buf[body_at:body_at + body_len].replace(b"\xff\x00", b"\xff")
    if meta_len > len(payload) or zlib.crc32(payload) != payload_crc:
        return None
    record = _decode(payload[:meta_len], payload[meta_len:])
    return None if record is None else (body_at + body_len, record)


def _old_frame_at(buf: _Buffer, at: int, end: int, cap: int) -> tuple[int, OutRecord] | None:
    """The good frame of the format before version 2 at `at` (u32 meta length, u32 value length, u32 crc32)."""
    payload_at = at + _U32X3.size
    if payload_at > end:
        return None
    meta_len, value_len, crc = _U32X3.unpack(buf[at:payload_at])
    stop = payload_at + meta_len + value_len
    if meta_len + value_len > cap or stop > end:
        return None
    payload = buf[payload_at:stop]
    if zlib.crc32(payload) != crc:
        return None
    record = _decode(payload[:meta_len], payload[meta_len:])
    return None if record is None else (stop, record)


def _next_marker(buf: _Buffer, at: int, end: int) -> int:
    return buf.find(MARKER, at, end)


def _every_offset(buf: _Buffer, at: int, end: int) -> int:
    return at  # the old format has no marker: any offset may start a frame


def _frames(buf: _Buffer, at: int, end: int, cap: int, frame_at: _FrameAt = _frame_at,
            candidate: Callable[[_Buffer, int, int], int] = _next_marker) -> Iterator[tuple[int, int, OutRecord]]:
    """(start, end, record) of each good frame in buf[at:end], in order; bytes between them are damaged."""
    while at < end:
        start = candidate(buf, at, end)
        if start < 0:
            return
        found = frame_at(buf, start, end, cap)
        if found is None:
            at = start + 1
            continue
        yield start, found[0], found[1]
        at = found[0]


@contextlib.contextmanager
def _mapped(fd: int, length: int) -> Iterator[_Buffer]:
    """The log's first `length` bytes (never more than it holds), mapped read-only."""
    length = min(length, os.fstat(fd).st_size)
    if length <= 0:
        yield b""
        return
    with mmap.mmap(fd, length, access=mmap.ACCESS_READ) as buf:
        yield buf


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a file system that cannot sync a directory
            raise
    finally:
        os.close(fd)


def _settle(batch: list[tuple[bytes, asyncio.Future[None]]], error: Exception | None) -> None:
    for _, future in batch:
        if future.done():  # the caller went away; its record was written (or not) all the same
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


# -- the spool -------------------------------------------------------------------------------------------


class Spool:
    def __init__(self, directory: Path, max_bytes: int = 1 << 30) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.log_path = directory / "spool.log"
        self.pos_path = directory / "spool.pos"
        self.migration_path = directory / "spool.log.v2"
        self._fd = -1
        self._frame_cap = max(max_bytes, _FRAME_CAP_FLOOR)
        self._size = 0       # bytes on disk plus bytes reserved by queued appends
        self._durable = 0    # bytes written and fsync'ed: what may be read
        self._pos = 0        # bytes drained
        self._records = 0    # records appended (or queued) and not yet drained
        self._dirty = False  # the log may hold bytes past _durable that could not be cut off yet
        self._corrupt = 0    # damaged bytes stepped over since open
        self._counted_to = 0  # damaged bytes before this offset are already in _corrupt
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._flushed = asyncio.Event()
        self._io = asyncio.Lock()     # one writer or truncation at a time
        self._drain = asyncio.Lock()  # one read or commit at a time: a commit may empty the mapped log

    # -- lifecycle -------------------------------------------------------------------------------------

    def open(self) -> int:
        """Recover what a previous run left; returns the number of records waiting to be drained."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.migration_path.unlink(missing_ok=True)  # a migration that died before its rename: the log is intact
        self._pos = self._read_pos()
        self._fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        _fsync_dir(self.directory)
        size = os.fstat(self._fd).st_size
        if self._pos > size:
            self._pos = 0  # the run before died after emptying the drained log, before moving the position
        with _mapped(self._fd, size) as buf:
            old = (size > 0 and buf[0] != MARKER[0] and next(_frames(buf, 0, size, self._frame_cap), None) is None
                   and next(_frames(buf, 0, size, self._frame_cap, _old_frame_at, _every_offset), None) is not None)
        if old:
            self._migrate()
            size = os.fstat(self._fd).st_size
        count, good_end, skipped = 0, self._pos, 0
        with _mapped(self._fd, size) as buf:
            for start, stop, _ in _frames(buf, self._pos, size, self._frame_cap):
                count, good_end, skipped = count + 1, stop, skipped + start - good_end
        if good_end < size:
            self._cut_back(good_end)  # a torn tail: written by a run that died before answering
        self._size = self._durable = self._counted_to = good_end
        self._records, self._corrupt = count, skipped
        self._flushed.set()
        return count

    def _migrate(self) -> None:
        """Rewrite a log of the format before version 2 as version 2: its records not yet drained, in order."""
        with _mapped(self._fd, os.fstat(self._fd).st_size) as buf, open(self.migration_path, "wb") as out:
            for _, _, record in _frames(buf, self._pos, len(buf), self._frame_cap, _old_frame_at, _every_offset):
                out.write(_encode(record))
            out.flush()
            os.fsync(out.fileno())
        self._write_pos(0, durable_name=True)  # first: a crash before the rename re-sends what was drained, never skips
        os.replace(self.migration_path, self.log_path)
        _fsync_dir(self.directory)
        os.close(self._fd)
        self._fd = os.open(self.log_path, os.O_RDWR | os.O_APPEND)
        self._pos = 0

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.shield(self._writer)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- appending -------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records accepted and not yet drained, including those still being written."""
        return self._records

    @property
    def size_bytes(self) -> int:
        return self._size - self._pos

    @property
    def corrupt_bytes_total(self) -> int:
        """Damaged bytes stepped over since `open` (found by it or by the drain), each counted once."""
        return self._corrupt

    async def append(self, record: OutRecord) -> None:
        """Returns once `record` is fsync'ed; raises SpoolFull, or OSError when it could not be written."""
        frame = _encode(record)
        if self._size - self._pos + len(frame) > self.max_bytes:
            raise SpoolFull(f"spool holds {self.size_bytes} bytes, its limit is {self.max_bytes}")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((frame, future))
        self._records += 1
        self._size += len(frame)  # reserved now, so the limit holds for concurrent appends too
        self._flushed.clear()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())
        await future

    async def _write_queued(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                error: Exception | None = None
                async with self._io:
                    batch, self._queue = self._queue, []
                    data = b"".join(frame for frame, _ in batch)
                    try:
                        await loop.run_in_executor(None, self._write_and_sync, data, self._durable)
                    except Exception as exc:  # OSError from the disk; anything else fails the batch all the same
                        error = exc
                        self._records -= len(batch)
                        self._size -= len(data)
                    else:
                        self._durable += len(data)
                _settle(batch, error)
        finally:
            self._flushed.set()

    def _write_and_sync(self, data: bytes, start: int) -> None:
        """Append `data` and fsync it; on any error cut the log back to `start`, the end of the last good frame."""
        if self._dirty:
            self._cut_back(start)  # an earlier cut failed: nothing may land after torn bytes
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                if not written:
                    raise OSError(errno.EIO, "write() wrote nothing")
                view = view[written:]
            os.fsync(self._fd)
        except BaseException:
            with contextlib.suppress(OSError):
                self._cut_back(start)  # if this fails, _dirty stays set and the next batch retries it
            raise

    def _cut_back(self, offset: int) -> None:
        self._dirty = True
        os.ftruncate(self._fd, offset)
        os.fsync(self._fd)
        self._dirty = False

    # -- draining --------------------------------------------------------------------------------------

    async def read_batch(self, limit: int = 500) -> SpoolBatch:
        """Up to `limit` records from the drain position (waiting for queued writes), and where each ends."""
        await self._flushed.wait()
        return await asyncio.shield(self._read_locked(max(1, limit)))  # a cancelled caller must not unlock a read

    async def _read_locked(self, limit: int) -> SpoolBatch:
        async with self._drain:
            return await asyncio.get_running_loop().run_in_executor(None, self._read, self._pos, self._durable, limit)

    def _read(self, start: int, end: int, limit: int) -> SpoolBatch:
        records: list[OutRecord] = []
        ends: list[int] = []
        first = at = start  # where the first record starts; where the last one ends
        with _mapped(self._fd, end) as buf:
            end = max(start, len(buf))
            for frame_start, frame_end, record in _frames(buf, start, end, self._frame_cap):
                if records and frame_start > at:
                    break  # damaged bytes after a record start the next batch, so `end` stays ends[-1]
                if not records:
                    first = frame_start
                records.append(record)
                ends.append(frame_end)
                at = frame_end
                if len(records) == limit:
                    break
        skipped = (first if records else end) - start
        if start + skipped > self._counted_to:  # a batch read again (Kafka refused it) is not counted again
            self._corrupt += start + skipped - max(start, self._counted_to)
            self._counted_to = start + skipped
        return SpoolBatch(records, ends, skipped, start)

    async def commit(self, offset: int, count: int) -> None:
        """Kafka acknowledged the `count` records before `offset` (a batch's `ends[i]` or `end`): remember it,
        and start the log afresh once all is drained."""
        await asyncio.shield(self._commit_locked(offset, count))  # half a commit would leave counters wrong

    async def _commit_locked(self, offset: int, count: int) -> None:
        loop = asyncio.get_running_loop()
        async with self._drain, self._io:
            emptied = offset == self._size  # nothing written or queued after what was drained
            drained = self._records if emptied else count  # all of them: exact even if damage hid a counted record
            if emptied:
                await loop.run_in_executor(None, functools.partial(self._write_pos, 0, durable_name=True))
                try:
                    await loop.run_in_executor(None, self._cut_back, 0)
                except OSError:
                    pass  # the log keeps drained records a crash would re-send; the next emptying retries
                else:
                    self._size -= offset
                    self._durable -= offset
                    self._records -= drained
                    self._pos = self._counted_to = 0
                    return
            else:
                await loop.run_in_executor(None, self._write_pos, offset)
            self._pos = offset
            self._records -= drained

    def _read_pos(self) -> int:
        try:
            return max(0, int(self.pos_path.read_text().strip() or 0))
        except FileNotFoundError:
            return 0
        except ValueError:
            return 0  # unreadable: re-send from the start (a duplicate downstream removes), never skip

    def _write_pos(self, offset: int, durable_name: bool = False) -> None:
        tmp = self.pos_path.with_suffix(".tmp")
        with open(tmp, "w") as out:
            out.write(f"{offset}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.pos_path)
        if durable_name:  # losing this rename to a power cut must not revive an old position over a new log
            _fsync_dir(self.directory)
