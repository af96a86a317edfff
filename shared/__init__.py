"""selfheal's core: model, bundle, data, drift, rules, healing, registry, evaluation.

Nothing in this package talks to Kafka except :mod:`shared.kafka`; the services in
``services/`` are thin loops over these modules.
"""

__version__ = "0.1.0"
