"""The recipe: its schema (`Recipe`), `key=value` overrides, and where its run dir is."""

from __future__ import annotations

from pathlib import Path

from pydantic import ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from podium.config import Located, NumberRules, load_yaml, parse_override, set_in, validate
from podium.errors import ConfigError
from podium.models.publish import name_problem


def path_component_problem(name: str) -> str | None:
    """Why `name` is not one safe folder name (it would leave its parent folder), or None."""
    if not name or name in (".", "..") or name != name.strip():
        return "must be a folder name (not empty, '.' or '..', no leading or trailing space)"
    if "/" in name or "\\" in name or any(ord(c) < 32 for c in name):
        return "must be a single folder name (no '/', '\\' or control characters)"
    return None


class Recipe(NumberRules):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="the run's name; runs/<name> is its default output dir")
    description: str | None = None
    seed: int = Field(0, ge=0, description="the run seed: how it reaches the stages is podium.seeding")
    seeds: list[int] | None = Field(None, min_length=1, description="run once per seed into OUTPUT/seed-N "
                                    "(podium.multiseed)")
    output_dir: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    # Default `launch:` of the stages that can run on several processes (podium.distributed.spec).
    launch: dict | None = None
    stages: list[dict] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, value: str | None) -> str | None:
        problem = None if value is None else path_component_problem(value)
        if problem:
            raise PydanticCustomError("podium", "{message}", {"message": f"the recipe name {problem}, since "
                                      "runs/<name> is the default output dir"})
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            if any(s < 0 for s in value):
                raise ValueError("seeds are integers >= 0")
            if len(set(value)) != len(value):
                raise ValueError(f"seeds repeat: {value}")
        return value


def load_recipe(recipe_path: str, overrides: list[str] = ()) -> tuple[Located, Recipe]:
    """The recipe at `recipe_path` with `overrides` applied (`stage.key=value` or a recipe key), validated; errors
    name file, line and key."""
    located = load_yaml(recipe_path)
    data = located.data
    if not isinstance(data, dict):
        raise ConfigError(f"{located.where()}: a recipe is a mapping with a 'stages' list")
    apply_overrides(data, overrides)
    recipe = validate(Recipe, data, located, (), "recipe")
    if recipe.seeds is not None and "seed" in data:
        raise ConfigError(f"{located.where(('seed',))}: give the recipe `seed` or `seeds`, not both")
    return located, recipe


def apply_overrides(data: dict, overrides: list[str]) -> None:
    """Set each `key=value` in the recipe's data: `stage.key...` in the stage of that name, else a recipe key."""
    names = [s.get("name") for s in data.get("stages") or [] if isinstance(s, dict)]
    for ov in overrides:
        keys, value = parse_override(ov)
        if keys[0] in names and len(keys) > 1:
            stage_data = data["stages"][names.index(keys[0])]
            set_in(stage_data, keys[1:], value)
        elif keys[0] in Recipe.model_fields and keys[0] != "stages":
            set_in(data, keys, value)
        else:
            raise ConfigError(f"override {ov!r}: {keys[0]!r} is neither a stage ({', '.join(map(str, names))}) "
                              "nor a recipe key")


def run_dir_of(recipe_path: str, recipe: Recipe, output: str | None) -> Path:
    """`output`, else the recipe's `output_dir`, else runs/<name> (the recipe's name or file stem), resolved."""
    default_name = recipe.name or Path(recipe_path).stem
    if not (output or recipe.output_dir) and path_component_problem(default_name):
        raise ConfigError(f"{recipe_path}: the default output runs/{default_name} is not one folder: name the "
                          "recipe or pass --output")
    run_dir = Path(output or recipe.output_dir or Path("runs") / default_name).resolve()
    if why := name_problem(run_dir):  # before any file system call with it (a long name fails those too)
        raise ConfigError(f"{recipe_path}: run dir {run_dir}: {why}")
    return run_dir
