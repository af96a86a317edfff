"""Offline experiments over the scenario library, with exports and plots."""

from shared.experiment.runner import ExperimentConfig, ExperimentResult, run

__all__ = ["ExperimentConfig", "ExperimentResult", "run"]
