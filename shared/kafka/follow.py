"""Following ``adapter-weights``: a thread that reads the topic from the beginning, forever.

Each record keyed by our bundle id is checked on this thread -- signature first, then the
payload (safetensors, shapes, finite values, bundle, metadata) -- and handed to
``on_adapter``; a refused record is counted and reported to ``on_reject``, and the
service keeps the adapter it has. ``caught_up`` is set once every partition reached its
end, so a service can wait until it holds the newest published adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from shared.errors import WeightsError
from shared.kafka.clients import beginnings
from shared.kafka.config import KafkaSettings, consumer_config
from shared.messages.adapters import AdapterMessage, decode_adapter
from shared.model import ModelConfig
from shared.signing import ADAPTER, Signer


class AdapterFollower(threading.Thread):
    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        config: ModelConfig,
        bundle: str,
        signer: Signer,
        on_adapter: Callable[[AdapterMessage], None],
        on_reject: Callable[[str, int], None] | None = None,
    ) -> None:
        super().__init__(name="adapter-follower", daemon=True)
        self.settings, self.topic, self.config, self.bundle = settings, topic, config, bundle
        self.signer = signer
        self.on_adapter, self.on_reject = on_adapter, on_reject
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self.accepted = 0
        self.rejected = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        consumer = Consumer(consumer_config(self.settings, None, **{"enable.partition.eof": True}))
        try:
            parts: list[TopicPartition] = []
            while not parts and not self._stop.is_set():
                parts = beginnings(consumer, self.topic, timeout=5)
                if not parts:
                    self._stop.wait(0.5)
            consumer.assign(parts)
            at_end: set[int] = set()
            while not self._stop.is_set():
                msg = consumer.poll(0.2)  # returns with the first message (consume(n) waits for n)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition() or 0)
                        if len(at_end) == len(parts):
                            self.caught_up.set()
                    continue
                key = msg.key()
                if key is None or key.decode(errors="replace") != self.bundle:
                    continue  # another bundle's adapter: not ours to judge
                self._handle(msg)
        finally:
            consumer.close()

    def _handle(self, msg: Message) -> None:
        offset = msg.offset() or 0
        try:
            self.signer.verify(ADAPTER, msg.key(), msg.value(), msg.headers())
            message = decode_adapter(msg.value() or b"", self.config, self.bundle)
        except WeightsError as exc:
            self.rejected += 1
            if self.on_reject:
                self.on_reject(str(exc), offset)
            return
        self.accepted += 1
        self.on_adapter(message)
