"""Kafka: settings from the environment, the embedded broker, thin confluent-kafka wrappers."""

from shared.kafka.broker import BrokerError, EmbeddedBroker
from shared.kafka.clients import (
    KafkaClientError,
    TrackedProducer,
    check,
    create_topics,
    group_consumer,
    read_topic,
    wait_for_topics,
)
from shared.kafka.config import KafkaSettings, Topics, TopicSpec

__all__ = [
    "BrokerError",
    "EmbeddedBroker",
    "KafkaClientError",
    "KafkaSettings",
    "TopicSpec",
    "Topics",
    "TrackedProducer",
    "check",
    "create_topics",
    "group_consumer",
    "read_topic",
    "wait_for_topics",
]
