"""One exception root for selfheal, with small subclasses a caller can catch."""

from __future__ import annotations


class SelfhealError(Exception):
    """Root of every error selfheal raises on purpose."""


class ConfigError(SelfhealError, ValueError):
    """A setting or argument is invalid."""


class DataError(SelfhealError, ValueError):
    """An input table or record is unusable; the message names the problem."""


class RulesError(SelfhealError, ValueError):
    """A rules file is invalid; the message names the rule."""


class BundleError(SelfhealError):
    """A model bundle is missing, incomplete, or does not match its id."""


class WeightsError(SelfhealError, ValueError):
    """Adapter weights are corrupt, the wrong shape, or not finite."""


class HealingError(SelfhealError):
    """A heal cycle could not run."""
