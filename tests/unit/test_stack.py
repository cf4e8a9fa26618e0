"""Which Kafka addresses `wxarchive up` may serve with the local broker, and which must already answer."""

import pytest

from wxarchive.stack import served_locally


@pytest.mark.parametrize("bootstrap", ["127.0.0.1:9092", "localhost:9092", "127.0.0.2:19092", "[::1]:9092",
                                       "127.0.0.1:9092,localhost:9093"])
def test_loopback_is_local(bootstrap: str) -> None:
    assert served_locally(bootstrap)


@pytest.mark.parametrize("bootstrap", ["kafka-1.internal:9092", "10.0.0.5:9092", "127.0.0.1:9092,broker:9092"])
def test_anything_else_must_already_answer(bootstrap: str) -> None:
    assert not served_locally(bootstrap)
