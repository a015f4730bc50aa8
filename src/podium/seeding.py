"""How a recipe's seed reaches its stages.

A recipe has one run seed S (`seed:` in the recipe, default 0; `podium run --seeds 0,1,2` runs the
recipe once per S). It reaches every stage whose kind takes a `seed` setting, except the kinds in
`PINNED_KINDS`:

- a stage that writes no `seed` gets `seed: S`;
- every `seed` the stage writes (its own, a data source's in a mixture, selfplay's `train: {seed}`)
  becomes `seed + S` — offset, not replaced, so two stages the author seeded apart (Sakura's two
  fine-tunes, `seed: 0` and `seed: 1`) stay apart on every run seed;
- with S = 0 the settings are left exactly as written: seed 0 *is* the recipe, its stages keep their
  keys, and a single-seed run dir stays cached.

What a pinned kind draws is the same for every S: the evaluation items and samples of `eval`
(every seed's models are scored on the same held-out items, so seed-to-seed spread is the method's,
not the test draw's, and paired differences compare models on identical items), and the dataset a
`tasks` stage writes (a fixed dataset, like a file on disk: run once and shared by all seeds).
"""

from __future__ import annotations

from typing import Any

from podium.stages import StageSpec

SEED_KEY = "seed"
# Stage kinds whose randomness is the measurement or the dataset, not the experiment (see above).
PINNED_KINDS = {
    "eval": "evaluation items and samples are the same for every run seed",
    "tasks": "the task dataset it writes is the same for every run seed (shared, run once)",
}


def takes_run_seed(spec: StageSpec) -> bool:
    """Whether the run seed reaches stages of this kind: the config has a `seed` setting and the kind is not pinned."""
    return SEED_KEY in spec.config.model_fields and spec.kind not in PINNED_KINDS


def offset_seeds(value: Any, seed: int) -> Any:
    """`value` with every integer under a `seed` key, at any depth, increased by `seed`."""
    if isinstance(value, dict):
        return {k: (v + seed if k == SEED_KEY and isinstance(v, int) and not isinstance(v, bool)
                    else offset_seeds(v, seed)) for k, v in value.items()}
    if isinstance(value, list):
        return [offset_seeds(v, seed) for v in value]
    return value


def apply_run_seed(spec: StageSpec, settings: dict, seed: int) -> dict:
    """A stage's raw settings under run seed `seed` (the rule in this module's docstring)."""
    if seed == 0 or not takes_run_seed(spec):
        return settings
    out = offset_seeds(settings, seed)
    if out.get(SEED_KEY) is None:
        out[SEED_KEY] = seed
    return out
