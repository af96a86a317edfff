"""What travels on each topic: one module per message, each with a typed value, its
encoder and its decoder. A decoder never raises on bad input: it returns a :class:`Reject`
(a stable code and the human text), and the services dead-letter or skip the record.

==================  ===========================================  ==============================
topic               module                                        value
==================  ===========================================  ==============================
transactions        :mod:`shared.messages.transactions`           Transaction, TransactionBatch
decisions           :mod:`shared.messages.decisions`              Decision
labels              :mod:`shared.messages.labels`                 Label
drift-alerts        :mod:`shared.messages.alerts`                 Alert
adapter-weights     :mod:`shared.messages.adapters`               AdapterMessage
adapter-registry    :mod:`shared.registry.snapshot`               Snapshot (its own bytes)
transactions.dlq    :mod:`shared.messages.dead_letters`           DeadLetter (headers)
monitor-stats       :mod:`shared.messages.monitor_stats`          MonitorStats (safetensors)
==================  ===========================================  ==============================
"""

from shared.messages.alerts import Alert, decode_alert, encode_alert
from shared.messages.dead_letters import DeadLetter, decode_dead_letter
from shared.messages.decisions import (
    Decision,
    decode_decision,
    decode_decisions,
    encode_decision,
    encode_decisions,
)
from shared.messages.labels import Label, decode_label, encode_label
from shared.messages.reject import Reject, RejectCode
from shared.messages.transactions import (
    Checks,
    RecentIds,
    Transaction,
    TransactionBatch,
    decode_transactions,
    encode_transaction,
)

__all__ = [
    "Alert",
    "Checks",
    "DeadLetter",
    "Decision",
    "Label",
    "RecentIds",
    "Reject",
    "RejectCode",
    "Transaction",
    "TransactionBatch",
    "decode_alert",
    "decode_dead_letter",
    "decode_decision",
    "decode_decisions",
    "decode_label",
    "decode_transactions",
    "encode_alert",
    "encode_decision",
    "encode_decisions",
    "encode_label",
    "encode_transaction",
]
