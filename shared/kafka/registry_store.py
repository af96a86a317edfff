"""The registry on a compacted topic: one record per snapshot, keyed by snapshot id.

Loading reads the topic from the beginning to its end; a restarted healer rebuilds its
registry from it. (The embedded broker compacts nothing; a reader sees every record,
and ids are unique, so the result is the same.)
"""

from __future__ import annotations

from shared.adapters import encode_adapter
from shared.kafka.clients import TrackedProducer, read_topic
from shared.kafka.config import KafkaSettings
from shared.model import ModelConfig
from shared.registry.snapshot import Snapshot


def publish_adapter(producer: TrackedProducer, topic: str, snap: Snapshot) -> None:
    """Put a snapshot's adapter on ``adapter-weights`` (keyed by bundle id) and wait for it."""
    data = encode_adapter(snap.adapter, snap.bundle, snap.version, snap.parent, snap.metrics)
    producer.produce(topic, data, key=snap.bundle)
    producer.flush()


class KafkaSnapshotStore:
    def __init__(
        self, settings: KafkaSettings, topic: str, config: ModelConfig, producer: TrackedProducer
    ) -> None:
        self.settings, self.topic, self.config, self.producer = settings, topic, config, producer

    def put(self, snapshot: Snapshot) -> None:
        self.producer.produce(self.topic, snapshot.to_bytes(), key=snapshot.id)
        self.producer.flush()  # a snapshot is durable before the adapter it holds is published

    def load_all(self) -> list[Snapshot]:
        snaps: dict[str, Snapshot] = {}
        for msg in read_topic(self.settings, self.topic, timeout=30.0):
            value = msg.value()
            if value:
                snap = Snapshot.from_bytes(value, self.config)
                snaps[snap.id] = snap
        return sorted(snaps.values(), key=lambda s: s.seq)
