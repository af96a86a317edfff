"""selfheal's core: model, bundle, data, drift, rules, healing, registry, evaluation, and the
messages on the topics (the Layout section of docs/design.md maps each concept to its file).

Only :mod:`shared.kafka` and the load generator :mod:`shared.loadgen` talk to Kafka; the
services in ``services/`` are thin loops over these modules.
"""

__version__ = "0.1.0"
