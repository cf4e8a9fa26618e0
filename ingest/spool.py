"""A durable local spool: callbacks accepted while Kafka is down, kept on disk in arrival order.

`append` returns only after the record is fsync'ed, so a 200 answered after it survives a crash of the
edge. Concurrent appends share one write and one fsync (group commit): during an outage many requests
arrive at once, and one fsync per request would cap the edge at the disk's sync rate. Frames carry a CRC;
a torn frame at the tail (the edge killed mid-write, before it answered) is cut off on the next start.
`spool.pos` records how far the spool has been drained to Kafka; it is advanced only after Kafka
acknowledged, so a crash while draining re-sends (a duplicate downstream removes), never skips.
"""

from __future__ import annotations

import asyncio
import os
import struct
import zlib
from pathlib import Path

import orjson

from ingest.records import OutRecord

_FRAME = struct.Struct(">III")  # meta length, value length, crc32(meta + value)


class SpoolFull(Exception):
    """The spool reached its size limit; the edge answers 503 again rather than fill the disk."""


def _encode(record: OutRecord) -> bytes:
    meta = orjson.dumps([record.topic, record.key.decode("latin-1"),
                         [[k, v.decode("latin-1")] for k, v in record.headers]])
    return _FRAME.pack(len(meta), len(record.value), zlib.crc32(meta + record.value)) + meta + record.value


def _decode(meta: bytes, value: bytes) -> OutRecord:
    topic, key, headers = orjson.loads(meta)
    return OutRecord(topic, key.encode("latin-1"), value, tuple((k, v.encode("latin-1")) for k, v in headers))


class Spool:
    def __init__(self, directory: Path, max_bytes: int = 1 << 30) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.log_path = directory / "spool.log"
        self.pos_path = directory / "spool.pos"
        self._fd = -1
        self._size = 0       # bytes on disk plus bytes reserved by queued appends
        self._durable = 0    # bytes written and fsync'ed: what may be read
        self._pos = 0        # bytes drained
        self._records = 0    # records appended (or queued) and not yet drained
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._flushed = asyncio.Event()
        self._io = asyncio.Lock()  # one writer or truncation at a time

    # -- lifecycle -------------------------------------------------------------------------------------

    def open(self) -> int:
        """Recover what a previous run left; returns the number of records waiting to be drained."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._pos = int(self.pos_path.read_text().strip() or 0) if self.pos_path.exists() else 0
        self._fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if self._pos > os.fstat(self._fd).st_size:
            self._pos = 0  # the run before died after emptying the drained log, before moving the position
        with open(self.log_path, "rb") as log:
            log.seek(self._pos)
            offset, count = self._pos, 0
            while True:
                header = log.read(_FRAME.size)
                if len(header) < _FRAME.size:
                    break
                meta_len, value_len, crc = _FRAME.unpack(header)
                payload = log.read(meta_len + value_len)
                if len(payload) < meta_len + value_len or zlib.crc32(payload) != crc:
                    break
                offset += _FRAME.size + meta_len + value_len
                count += 1
        if offset < os.fstat(self._fd).st_size:
            os.ftruncate(self._fd, offset)  # a torn tail: written by a run that died before answering
            os.fsync(self._fd)
        self._size = self._durable = offset
        self._records = count
        self._flushed.set()
        return count

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

    async def append(self, record: OutRecord) -> None:
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
        while self._queue:
            async with self._io:
                batch, self._queue = self._queue, []
                data = b"".join(frame for frame, _ in batch)
                try:
                    await loop.run_in_executor(None, self._write_and_sync, data)
                except OSError as exc:
                    self._records -= len(batch)
                    self._size -= len(data)
                    for _, future in batch:
                        future.set_exception(exc)
                    continue
                self._durable += len(data)
            for _, future in batch:
                future.set_result(None)
        self._flushed.set()

    def _write_and_sync(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)

    # -- draining --------------------------------------------------------------------------------------

    async def read_batch(self, limit: int = 500) -> tuple[list[OutRecord], int]:
        """Up to `limit` records from the drain position (waiting for queued writes), and where they end."""
        await self._flushed.wait()
        return await asyncio.get_running_loop().run_in_executor(None, self._read, limit)

    def _read(self, limit: int) -> tuple[list[OutRecord], int]:
        records, offset, end = [], self._pos, self._durable
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            while len(records) < limit and offset < end:
                meta_len, value_len, _ = _FRAME.unpack(log.read(_FRAME.size))
                meta, value = log.read(meta_len), log.read(value_len)
                records.append(_decode(meta, value))
                offset += _FRAME.size + meta_len + value_len
        return records, offset

    async def commit(self, offset: int, count: int) -> None:
        """Kafka acknowledged everything before `offset`: remember it, and start afresh once all is drained."""
        loop = asyncio.get_running_loop()
        async with self._io:
            emptied = offset == self._size  # nothing written or queued after what was drained
            await loop.run_in_executor(None, self._commit, 0 if emptied else offset, emptied)
            if emptied:
                self._size -= offset
                self._durable -= offset
                offset = 0
            self._pos = offset
        self._records -= count

    def _commit(self, offset: int, truncate: bool) -> None:
        if truncate:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
        tmp = self.pos_path.with_suffix(".tmp")
        with open(tmp, "w") as out:
            out.write(f"{offset}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.pos_path)
