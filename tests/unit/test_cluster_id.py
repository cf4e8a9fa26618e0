"""KRaft cluster ids: valid for the storage tool every time, not 63 times in 64."""

import re

from deploy.kafka_broker import new_cluster_id


def test_cluster_ids_never_look_like_options() -> None:
    ids = [new_cluster_id() for _ in range(5000)]
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)
    assert len(set(ids)) == len(ids)
