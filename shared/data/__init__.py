"""Data: the scenario library and reading users' tables."""

from shared.data.scenarios import FAMILY_PREFIX, build, from_tables, names
from shared.data.shapes import Dataset, Scenario, Stream

__all__ = ["FAMILY_PREFIX", "Dataset", "Scenario", "Stream", "build", "from_tables", "names"]
