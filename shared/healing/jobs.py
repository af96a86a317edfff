"""What runs a heal job, wherever it runs (inline, on a thread, in the heal process): a
labelled job trains and judges a candidate (:func:`~shared.healing.cycle.heal_cycle`), a
label-free one diagnoses the drift and judges the candidate it implies
(:func:`~shared.labelfree.label_free_cycle`)."""

from __future__ import annotations

from shared.bundle import Bundle
from shared.errors import ConfigError
from shared.healing.cycle import HealConfig, HealResult, heal_cycle
from shared.healing.events import HealJob
from shared.healing.types import HealKind
from shared.labelfree import LabelFreeConfig, LabelFreeReference, label_free_cycle


class JobRunner:
    def __init__(self, bundle: Bundle, heal: HealConfig, before_labels: LabelFreeConfig) -> None:
        self.bundle, self.heal, self.before_labels = bundle, heal, before_labels
        self.ref: LabelFreeReference | None = None
        self.unavailable: str | None = None  # why label-free jobs cannot run with this bundle
        try:
            self.ref = LabelFreeReference(bundle)
        except ConfigError as exc:
            self.unavailable = str(exc)

    def __call__(self, job: HealJob) -> HealResult:
        b = self.bundle
        if job.kind is HealKind.LABEL_FREE:
            if self.ref is None:
                raise ConfigError(self.unavailable or "no label-free reference")
            return label_free_cycle(
                job.model, job.batch.X, self.ref, b.threshold, b.costs, self.before_labels
            )
        shadow = b.adapter_state if self.heal.compare_shadow else None
        return heal_cycle(job.model, job.batch, b.rules, b.threshold, b.costs, self.heal, shadow)
