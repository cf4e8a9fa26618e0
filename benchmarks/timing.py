"""What the benchmarks here share: one core, the best of several rounds (a noisy VM decides nothing), and a
throwaway broker kept off the measured core."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.kafka_broker import BrokerSpec, LocalKafka  # noqa: E402
from wxarchive.config import Settings  # noqa: E402
from wxarchive.net import free_ports  # noqa: E402


def pin_to_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def best_seconds(fn: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def start_pinned_broker(run_dir: Path, cpu: int = 1) -> LocalKafka:
    """A throwaway local broker on free ports, pinned to `cpu` so it does not share the measured core."""
    port, controller_port = free_ports(2)
    defaults = Settings.load(env={})
    broker = LocalKafka(BrokerSpec(defaults.kafka_version, defaults.kafka_cache_dir, run_dir, "127.0.0.1", port,
                                   controller_port, "1g"))
    state = broker.start()
    subprocess.run(["taskset", "-cp", str(cpu), str(state.pid)], capture_output=True, check=True)
    return broker
