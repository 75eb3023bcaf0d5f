"""Sales pipelines: the open stages a deal moves through before it is won or lost."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Outcomes that end a deal; they have their own commands and are never stages of a pipeline.
OUTCOMES = ("won", "lost")


@dataclass(frozen=True)
class Pipeline:
    """A named, ordered list of open stages; a deal opens at the first."""

    name: str
    stages: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError(f"pipeline {self.name} has no stages")
        if clash := set(self.stages) & set(OUTCOMES):
            raise ValueError(f"pipeline {self.name}: {sorted(clash)} are outcomes, not stages")
        if len(set(self.stages)) != len(self.stages):
            raise ValueError(f"pipeline {self.name} repeats a stage")

    @property
    def first(self) -> str:
        """The stage a new deal starts at."""
        return self.stages[0]


#: lead → qualified → proposal → negotiation, then won or lost.
DEFAULT_PIPELINE = Pipeline("default", ("lead", "qualified", "proposal", "negotiation"))

Pipelines = Mapping[str, Pipeline]

DEFAULT_PIPELINES: Pipelines = {DEFAULT_PIPELINE.name: DEFAULT_PIPELINE}
