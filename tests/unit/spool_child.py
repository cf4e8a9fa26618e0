"""A process for the spool's crash tests: it appends records and prints `acked <id>` as each append returns
(flushed at once), `failed <id> <errno>` for each that raised.

    python -m tests.unit.spool_child DIR fsize LIMIT COUNT MORE
        appends COUNT records under a file size limit of LIMIT bytes (RLIMIT_FSIZE on itself: Python ignores
        SIGXFSZ, so a write beyond it is cut short and the next fails with EFBIG), prints `raised`, lifts the
        limit back to the hard one and appends MORE records
    python -m tests.unit.spool_child DIR loop
        appends until it is killed, on a slow disk (each write call takes at most 4 KiB, after 0.2 ms, as a
        short write may), so that a kill most likely lands in the middle of a write
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import resource
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.records import OutRecord
from ingest.spool import Spool

if TYPE_CHECKING:
    from typing_extensions import Buffer

GROUP = 4  # appends in flight at once, so failures hit group commits too


def rec(i: int, topic: str = "wx.raw", pad: int = 0) -> OutRecord:
    """Record `i`: its value carries 0xFF and NUL bytes, its headers non-ASCII bytes."""
    return OutRecord(topic, f"wxid_a|peer{i % 3}".encode(),
                     f'{{"n":{i}}}'.encode() + bytes([0xFF, 0, i % 256]) + b"\xff" * pad,
                     (("wx-received-at", b"1700000000000"), ("wx-edge", "边缘".encode())))


def record_id(record: OutRecord) -> int:
    return int(record.value[5:record.value.index(b"}")])


async def append_all(spool: Spool, ids: Iterable[int], pad: int) -> None:
    async def one(i: int) -> None:
        try:
            await spool.append(rec(i, pad=pad))
        except OSError as exc:
            print(f"failed {i} {errno.errorcode.get(exc.errno or 0, exc.errno)}", flush=True)
        else:
            print(f"acked {i}", flush=True)

    batch: list[int] = []
    for i in ids:
        batch.append(i)
        if len(batch) == GROUP:
            await asyncio.gather(*(one(j) for j in batch))
            batch = []
    await asyncio.gather(*(one(j) for j in batch))


async def main(directory: Path, mode: str, args: list[int]) -> None:
    spool = Spool(directory)
    spool.open()
    if mode == "fsize":
        limit, count, more = args
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        await append_all(spool, range(count), pad=100)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space comes back
        print("raised", flush=True)
        await append_all(spool, range(count, count + more), pad=100)
    else:
        write = os.write

        def slow_write(fd: int, data: Buffer) -> int:
            time.sleep(0.0002)
            return write(fd, memoryview(data)[:4096])

        os.write = slow_write  # the one os module, which ingest.spool calls
        await append_all(spool, itertools.count(), pad=32 * 1024)
    await spool.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], [int(a) for a in sys.argv[3:]]))
