"""The symbolic rule engine: declarative rules, conflicts with the model, weak labels."""

from shared.rules.engine import Rule, RuleSet

__all__ = ["Rule", "RuleSet"]
