"""`make bench`: the streaming stack's measured performance, every figure from one run on
one broker, so that ratios hold on a noisy machine.

    passthrough    consume -> produce, nothing else: the limit of the Python path
    scorer x1, x2  a backlog scored by one, then two scorer processes
    latency        produce -> decision received, at fixed offered rates (rounds on fresh topics)
    swap           adapters published while scoring: publish -> first use, batch gaps
    timeline       the latency children's loop timelines: each gap between batches, and its cause
    healing        one heal cycle; scorer throughput with a healer healing flat out
    monitor        a backlog through the monitor service (FIDI); peak memory of each service

Throughput is timed on the decisions' own timestamps, from the moment the consumers (in
the group, stopped with SIGSTOP while the backlog was written) are let go to the last
decision.
The children are the real services (``python -m services.cli scorer``) on topics of
their own; the passthrough is the scorers' loop (:func:`shared.kafka.runtime.batch_loop`)
with the same batch size, poll timeout, fetch wait and commit bound, and no work.

    config.py      BenchConfig          measure.py   the arithmetic (pure, tested)
    harness.py     broker, topics, children, backlogs, CPU steal    probes.py  /proc
    throughput.py  passthrough, scorer x1/x2, beside a healer, monitor, py-spy
    latency.py     latency at offered rates, hot swap, timelines    loads.py   the non-service children
    targets.py     the targets, one table    report.py  run_bench, bench.json, the table
"""

from services.bench.config import QUICK, BenchConfig
from services.bench.report import format_bench, run_bench

__all__ = ["QUICK", "BenchConfig", "format_bench", "run_bench"]
