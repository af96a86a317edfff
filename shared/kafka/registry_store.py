"""Adapters on ``adapter-weights`` and the registry on ``adapter-registry``, both signed.

The registry is a compacted topic with one record per snapshot, keyed by snapshot id.
Loading reads the topic from the beginning to its end; a restarted healer rebuilds its
registry from it. (The embedded broker compacts nothing; a reader sees every record,
and ids are unique, so the result is the same.) A record without a valid signature, or
one that does not parse, is skipped, logged and counted: the registry holds only what a
holder of the key wrote.
"""

from __future__ import annotations

from confluent_kafka import Message

from shared.errors import WeightsError
from shared.kafka.clients import TrackedProducer, read_topic
from shared.kafka.config import KafkaSettings
from shared.log import get_logger
from shared.messages.adapters import encode_adapter
from shared.model import AdapterState, ModelConfig
from shared.registry.snapshot import DirectoryStore, Snapshot
from shared.signing import ADAPTER, SNAPSHOT, Signer


def produce_adapter(
    producer: TrackedProducer,
    topic: str,
    signer: Signer,
    state: AdapterState,
    bundle: str,
    version: int,
    parent: int | None = None,
    metrics: dict[str, float] | None = None,
) -> None:
    """Queue a signed adapter record on ``topic`` (keyed by bundle id); raises WeightsError
    for a non-finite adapter."""
    data = encode_adapter(state, bundle, version, parent, metrics)
    producer.produce(topic, data, key=bundle, headers=signer.headers(ADAPTER, bundle, data))


def publish_adapter(producer: TrackedProducer, topic: str, snap: Snapshot, signer: Signer) -> None:
    """Put a snapshot's adapter on ``adapter-weights`` and wait for it."""
    produce_adapter(
        producer, topic, signer, snap.adapter, snap.bundle, snap.version, snap.parent, snap.metrics
    )
    producer.flush()


class KafkaSnapshotStore:
    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        config: ModelConfig,
        producer: TrackedProducer,
        signer: Signer,
    ) -> None:
        self.settings, self.topic, self.config, self.producer = settings, topic, config, producer
        self.signer = signer
        self.rejected: list[tuple[int, str]] = []  # (offset, reason) of records skipped by load_all
        self.log = get_logger("registry")

    def put(self, snapshot: Snapshot) -> None:
        self.put_many([snapshot])

    def put_many(self, snapshots: list[Snapshot]) -> None:
        for snapshot in snapshots:
            data = snapshot.to_bytes()
            headers = self.signer.headers(SNAPSHOT, snapshot.id, data)
            self.producer.produce(self.topic, data, key=snapshot.id, headers=headers)
        self.producer.flush()  # a snapshot is durable before the adapter it holds is published

    def parse(self, msg: Message) -> Snapshot:
        """The snapshot in a record, signature checked; raises WeightsError saying why not."""
        self.signer.verify(SNAPSHOT, msg.key(), msg.value(), msg.headers())
        snap = Snapshot.from_bytes(msg.value() or b"", self.config)
        if msg.key() != snap.id.encode():
            raise WeightsError(f"snapshot {snap.id!r} under the key {msg.key()!r}")
        return snap

    def load_all(self) -> list[Snapshot]:
        snaps: dict[str, Snapshot] = {}
        for msg in read_topic(self.settings, self.topic, timeout=30.0, settle=1.0):
            if not msg.value():
                continue  # a tombstone
            try:
                snap = self.parse(msg)
            except WeightsError as exc:
                self.rejected.append((msg.offset() or 0, str(exc)))
                self.log.warning("snapshot skipped", reason=str(exc), topic=self.topic, offset=msg.offset())
                continue
            snaps[snap.id] = snap
        return sorted(snaps.values(), key=lambda s: s.seq)


class MirroredStore:
    """The registry topic, mirrored to a directory on the healer's disk.

    The topic is the source of truth. When it is empty at start (the memory-only embedded
    broker lost everything with ``selfheal up``) and the directory holds snapshots, they are
    written back to the topic, so a restarted stack resumes with the whole history and the
    adapter that went live last. Snapshots the topic has and the directory lacks are
    copied to it."""

    def __init__(self, topic: KafkaSnapshotStore, mirror: DirectoryStore) -> None:
        self.topic, self.mirror = topic, mirror
        self.restored = 0  # snapshots written back to the topic from disk at start

    def put(self, snapshot: Snapshot) -> None:
        self.topic.put(snapshot)
        self.mirror.put(snapshot)

    def put_many(self, snapshots: list[Snapshot]) -> None:
        self.topic.put_many(snapshots)

    def load_all(self) -> list[Snapshot]:
        snaps = self.topic.load_all()
        on_disk = self.mirror.load_all()
        if not snaps and on_disk:
            self.topic.put_many(on_disk)
            self.restored = len(on_disk)
            return on_disk
        known = {s.id for s in on_disk}
        for s in snaps:
            if s.id not in known:
                self.mirror.put(s)
        return snaps
