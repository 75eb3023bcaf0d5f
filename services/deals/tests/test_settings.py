"""Configured pipelines: the default one is always there, more come from CRM_DEALS_PIPELINES."""

from __future__ import annotations

import pytest
from crm_deals.domain.pipeline import Pipeline
from crm_deals.settings import DealsSettings


def test_without_configuration_there_is_the_default_pipeline() -> None:
    pipelines = DealsSettings(deals_pipelines="{}").pipelines()
    assert pipelines == {"default": Pipeline("default", ("lead", "qualified", "proposal", "negotiation"))}


def test_configured_pipelines_join_the_default_one() -> None:
    pipelines = DealsSettings(deals_pipelines='{"renewal": ["proposal", "negotiation"]}').pipelines()
    assert pipelines["renewal"].stages == ("proposal", "negotiation")
    assert pipelines["default"].first == "lead"


@pytest.mark.parametrize("stages", ['["lead", "won"]', "[]", '["a", "a"]'])
def test_a_pipeline_with_an_outcome_no_stage_or_a_repeated_stage_is_refused(stages: str) -> None:
    with pytest.raises(ValueError, match="pipeline"):
        DealsSettings(deals_pipelines=f'{{"x": {stages}}}').pipelines()
