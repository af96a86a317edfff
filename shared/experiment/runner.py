"""Offline experiments: a scenario's stream through scoring, the monitor, rules, healing and
the registry, with the services' own cores.

``seed`` (:mod:`shared.experiment.seed`)
    The research system's protocol, faithfully (its flaws included).
``delayed`` (default, :mod:`shared.experiment.delayed`)
    A stream in order with labels arriving late, through the same path as the stack:
    monitor alerts open and close the healer's episodes, the healer's worker heals.
    A label-free healer (``HealerConfig(label_free=True)``) withholds every label.

In both, the frozen backbone and head are hashed before and after the run.
"""

from __future__ import annotations

from shared.data import build
from shared.errors import ConfigError
from shared.experiment.base import Progress, base_digest
from shared.experiment.config import ExperimentConfig, ExperimentResult
from shared.experiment.delayed import DelayedRun
from shared.experiment.oracle import oracle_scores
from shared.experiment.seed import SeedRun

__all__ = ["ExperimentConfig", "ExperimentResult", "base_digest", "oracle_scores", "run"]


def run(config: ExperimentConfig, progress: Progress | None = None) -> ExperimentResult:
    say = progress or (lambda _msg: None)
    scenario = build(config.scenario, seed=config.seed, n_pre=config.n_pre, n_post=config.stream_post)
    if config.protocol == "seed":
        if scenario.drift_test is None:
            raise ConfigError("the seed protocol needs the seed scenario's drifted set: use --scenario seed")
        return SeedRun(config, scenario, say).run()
    return DelayedRun(config, scenario, say).run()
