"""Data: the scenario library and reading users' tables."""

from shared.data.scenarios import Dataset, Scenario, Stream, build, from_tables, names

__all__ = ["Dataset", "Scenario", "Stream", "build", "from_tables", "names"]
