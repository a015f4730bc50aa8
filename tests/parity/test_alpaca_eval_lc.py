"""`podium winrate --df-gamed` equals alpaca_eval 0.6.6's own `get_length_controlled_winrate`.

The oracle is the released package, run in a venv of its own (tests/alpaca_oracle.py: built once,
cached; the test skips only when the package registry is unreachable). Inputs are the synthetic
AlpacaEval annotation sets of tests/lc_synthetic.py (issue 15's four cases) with gamed-baseline
rows from the same judge, written as AlpacaEval's files, plus edge cases AlpacaEval's format
allows: null preferences, the legacy 0 draw, exact 1.5 draws, rows without `index`.
"""

from __future__ import annotations

import json

import pytest
from tests.alpaca_oracle import run_alpaca_eval
from tests.lc_synthetic import CASES, make

from podium.evaluation.winrate import winrate_report

pytestmark = pytest.mark.parity

HEAD_TO_HEAD = ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total", "discrete_win_rate")


def edge_case_rows(rows: list[dict], drop_index: bool) -> list[dict]:
    out = []
    for i, row in enumerate(rows):
        row = dict(row)
        if i % 29 == 0:
            row["preference"] = None
        elif i % 31 == 0:
            row["preference"] = 0
        elif i % 37 == 0:
            row["preference"] = 1.5
        if drop_index:
            row.pop("index")
        out.append(row)
    return out


def test_lc_with_df_gamed_equals_alpaca_eval_0_6_6(tmp_path):
    jobs, ours = [], []
    for case in CASES:
        for seed in (0, 1):
            paths = make(case, seed).write(tmp_path / f"{case}-{seed}")
            jobs.append({"annotations": str(paths["annotations"]), "df_gamed": str(paths["df_gamed"])})
            ours.append(winrate_report(paths["annotations"], paths["df_gamed"]))
    for drop_index in (False, True):
        paths = make("better_longer", 2).write(tmp_path / f"edge-{drop_index}")
        rows = json.loads(paths["annotations"].read_text())
        paths["annotations"].write_text(json.dumps(edge_case_rows(rows, drop_index)))
        jobs.append({"annotations": str(paths["annotations"]), "df_gamed": str(paths["df_gamed"])})
        ours.append(winrate_report(paths["annotations"], paths["df_gamed"]))

    for job, mine, ref in zip(jobs, ours, run_alpaca_eval(jobs)):
        where = job["annotations"]
        assert mine["estimator"] == "alpaca_eval-0.6.6-glm"
        assert mine["length_controlled_winrate"] == pytest.approx(ref["length_controlled_winrate"], abs=0.5), where
        assert mine["lc_standard_error"] == pytest.approx(ref["lc_standard_error"], abs=0.05), where
        for key in HEAD_TO_HEAD:
            assert mine[key] == pytest.approx(ref[key], abs=1e-9), (where, key)
