"""faust-streaming + aiokafka 0.14 + the pinned broker work together: a table-backed agent round trip."""

import asyncio
from collections.abc import Callable

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import StreamT

from streams.faust_app import create_app
from wxarchive.config import Settings
from wxarchive.kafka_clients import manual_commit_consumer


def test_table_backed_agent_round_trip(settings: Settings, topic_name: Callable[[str], str]) -> None:
    source, sink, app_id = topic_name("faust-in"), topic_name("faust-out"), topic_name("faust-app")

    async def scenario() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(source, 1, 1), NewTopic(sink, 1, 1)])
        await admin.close()

        app = create_app(settings, app_id=app_id)
        src, out = (app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
                    for name in (source, sink))
        seen = app.Table("seen", default=int)

        @app.agent(src)
        async def count(stream: StreamT[bytes]) -> None:
            async for key, value in stream.items():
                seen[key.decode()] += 1
                await out.send(key=key, value=value + b"#%d" % seen[key.decode()])

        await app.start()
        try:
            for i in range(3):
                await src.send(key=b"alice", value=b"a%d" % i)
            await src.send(key=b"bob", value=b"b0")
            reader = manual_commit_consumer(settings.kafka_bootstrap, topic_name("check"), sink)
            await reader.start()
            got: list[bytes] = []
            deadline = asyncio.get_running_loop().time() + 60
            while len(got) < 4 and asyncio.get_running_loop().time() < deadline:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    got.extend(r.value for r in records)
            await reader.stop()
            assert sorted(got) == [b"a0#1", b"a1#2", b"a2#3", b"b0#1"]
            assert dict(seen.items()) == {"alice": 3, "bob": 1}
            assert app.consumer.assignment()  # the worker joined its group and owns the source partition
        finally:
            await app.stop()

        # the table is backed by its changelog topic: the counts are in Kafka, not only in memory
        changelog = f"{app_id}-seen-changelog"
        reader = manual_commit_consumer(settings.kafka_bootstrap, topic_name("changelog"), changelog)
        await reader.start()
        latest: dict[bytes, bytes] = {}
        end = (await reader.end_offsets([TopicPartition(changelog, 0)]))[TopicPartition(changelog, 0)]
        while sum(1 for _ in latest) < 2 or (await reader.position(TopicPartition(changelog, 0))) < end:
            for records in (await reader.getmany(timeout_ms=500)).values():
                latest.update({r.key: r.value for r in records})
        await reader.stop()
        assert latest == {b'"alice"': b"3", b'"bob"': b"1"}

    asyncio.run(scenario())
