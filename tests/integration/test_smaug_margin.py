"""Smaug's claim at toy scale (benchmarks/smaug_margin.py): on corrupted-digit pairs DPO raises the margin
while the chosen log-ratio falls below zero; DPOP (lambda 50) keeps the chosen log-ratio >= 0."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def test_dpo_lowers_chosen_dpop_keeps_it(tmp_path):
    from smaug_margin import smaug_curves, summary

    curves = smaug_curves(steps=60, work=tmp_path)
    dpo_ratio, dpo_margin = summary(curves["dpo"])
    dpop_ratio, dpop_margin = summary(curves["dpop"])
    assert dpo_margin > 5.0 and dpo_ratio < -5.0
    # DPOP's penalty acts only below zero, so it hovers at or just above zero (batch means).
    assert dpop_ratio >= 0.0 and min(r["chosen_logratio"] for r in curves["dpop"][-10:]) >= -0.5
    assert dpop_margin > 0.0
