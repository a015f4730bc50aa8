"""Every recipe under recipes/ loads and plans (no download, nothing run)."""

from pathlib import Path

import pytest

from podium.planning import make_plan

RECIPES = sorted(p for p in Path(__file__).parents[2].joinpath("recipes").rglob("*.yaml")
                 if "examples" not in p.parts)


@pytest.mark.parametrize("recipe", RECIPES, ids=[str(p.relative_to(p.parents[1])) for p in RECIPES])
def test_recipe_plans(recipe, tmp_path):
    plan = make_plan(str(recipe), output=str(tmp_path / "run"))
    assert plan.stages and all(s.status == "run" for s in plan.stages)


def test_recipes_found():
    assert any(p.name == "quickstart.yaml" for p in RECIPES)
