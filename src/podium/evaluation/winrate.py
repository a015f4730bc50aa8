"""Win rate of a model against a baseline under a judge, raw and length-controlled, as AlpacaEval 2 reports it.

`winrate_report(annotations, df_gamed=None, instruction_difficulty=None)` reads AlpacaEval
annotation files or podium judgments (`annotations.py`) and returns the numbers of AlpacaEval's
leaderboard, in percent: `win_rate` (100 · mean P(model ≻ baseline), draws ½), `standard_error`
(of that mean, ddof=1), `n_wins`, `n_wins_base`, `n_draws`, `n_total`, `discrete_win_rate`
(each preference rounded to a win, a loss or an exact draw), `length_controlled_winrate` and
`lc_standard_error`, plus `estimator`, which says how the LC number was made:

- with `df_gamed` (AlpacaEval's `df_gamed.csv`): `alpaca_eval-0.6.6-glm`, alpaca_eval 0.6.6's own
  estimator (`alpaca_glm.py`); difficulties from df_gamed unless `instruction_difficulty` is given;
- without it (offline): `podium-regularised-glm` (`length_controlled.py`), with γ from
  `instruction_difficulty` when given.
"""

from __future__ import annotations

import os

import numpy as np

from podium.errors import DataError
from podium.evaluation.alpaca_files import GamedRows, read_df_gamed, read_instruction_difficulty
from podium.evaluation.alpaca_glm import alpaca_eval_lc
from podium.evaluation.annotations import Annotations, difficulty_per_row, read_annotations
from podium.evaluation.length_controlled import length_feature, regularised_lc, sigmoid

__all__ = ["head_to_head", "length_feature", "preferences_from_scores", "win_rate", "winrate_report"]

PathLike = str | os.PathLike


def win_rate(preferences) -> float:
    """Raw win rate in percent: 100 · mean P(model ≻ baseline) (NaN entries left out)."""
    p = np.asarray(preferences, dtype=float)
    p = p[~np.isnan(p)]
    if p.size == 0:
        raise DataError("win rate: no preferences")
    return float(100.0 * p.mean())


def head_to_head(preferences) -> dict:
    """AlpacaEval's head-to-head numbers from P(model ≻ baseline) [N] (NaN = no preference, left out)."""
    p = np.asarray(preferences, dtype=float)
    p = p[~np.isnan(p)]
    if p.size == 0:
        raise DataError("win rate: no preferences")
    draws = p == 0.5
    # AlpacaEval rounds the preference on its [1, 2] scale; numpy rounds halves to even, as pandas does.
    discrete = np.where(draws, 0.5, np.round(1.0 + p) - 1.0)
    return {
        "win_rate": float(100 * p.mean()),
        "standard_error": float(100 * p.std(ddof=1) / np.sqrt(p.size)) if p.size > 1 else 0.0,
        "n_wins": int((p > 0.5).sum()),
        "n_wins_base": int((p < 0.5).sum()),
        "n_draws": int(draws.sum()),
        "n_total": int(p.size),
        "discrete_win_rate": float(100 * discrete.mean()),
    }


def preferences_from_scores(model_scores, baseline_scores) -> np.ndarray:
    """P(model ≻ baseline) = σ(s_model − s_baseline) [N] for a scalar judge (reward model, Bradley–Terry)."""
    return sigmoid(np.asarray(model_scores, dtype=float) - np.asarray(baseline_scores, dtype=float))


def winrate_report(
    annotations: Annotations | PathLike,
    df_gamed: GamedRows | PathLike | None = None,
    instruction_difficulty: dict[int, float] | PathLike | None = None,
) -> dict:
    """Raw and length-controlled win rates (percent) of one model against one baseline; see the module doc.

    Each argument is a path (read here) or what `annotations.py` reads from one.
    """
    ann = annotations if isinstance(annotations, Annotations) else read_annotations(annotations)
    gamed = df_gamed if df_gamed is None or isinstance(df_gamed, GamedRows) else read_df_gamed(df_gamed)
    difficulty_source = None
    if instruction_difficulty is not None and not isinstance(instruction_difficulty, dict):
        difficulty_source = str(instruction_difficulty)
        instruction_difficulty = read_instruction_difficulty(instruction_difficulty)
    notes = list(ann.notes)
    report = {**head_to_head(ann.preference), "generator": ann.generator, "baseline": ann.baseline,
              "annotations": ann.source, "format": ann.format}

    if instruction_difficulty is not None:
        gamma = difficulty_per_row(ann, instruction_difficulty, difficulty_source or "instruction_difficulty")
    elif gamed is not None:
        gamma = difficulty_per_row(ann, gamed.difficulty_by_index, gamed.source)
    else:
        gamma = None
    if gamma is not None and ann.index is None:
        notes.append("rows have no `index`: instruction difficulty looked up by row position, as alpaca_eval does")

    if gamed is not None:
        lc = alpaca_eval_lc(ann.preference, ann.model_length, ann.baseline_length, gamma, gamed)
        if not gamed.index_order_matches_rows and instruction_difficulty is None:
            notes.append(f"{gamed.source}: rows are not in index order; alpaca_eval 0.6.6 looks difficulties up by "
                         "row label, so its number differs from this one, which looks them up by index")
    else:
        lc = regularised_lc(ann.preference, ann.model_length, ann.baseline_length, difficulty=gamma,
                            instruction_ids=ann.instruction_ids)
    report["length_controlled_winrate"] = lc.pop("length_controlled_winrate")
    report["lc_standard_error"] = lc.pop("lc_standard_error")
    report["estimator"] = lc.pop("estimator")
    report["fit"] = lc
    report["difficulty"] = ("instruction_difficulty file" if instruction_difficulty is not None
                            else "df_gamed" if gamed is not None else "none")
    if notes:
        report["notes"] = notes
    return report


def summary(report: dict) -> str:
    """One line for the terminal."""
    sd = report.get("fit", {}).get("lc_posterior_sd")
    return (f"win rate {report['win_rate']:.2f} ± {report['standard_error']:.2f}  "
            f"length-controlled {report['length_controlled_winrate']:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")
            + f"  (n={report['n_total']}, estimator {report['estimator']})")
