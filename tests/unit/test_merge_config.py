"""mergekit YAML parsing: gradients, filters, precedence, and errors that name file, line and field."""

from __future__ import annotations

import pytest

from podium.errors import ConfigError
from podium.merging.config import load_config, parse_config
from podium.merging.parameters import evaluate_setting, resolve_tensor_parameters


def test_gradient_is_piecewise_linear_over_layers():
    """[0, 0.5, 0.3, 0.7, 1] over 4 layers: layer i has t = i/3; layer 1: 1/3·4 = 1.333 -> between
    entries 1 and 2 at 1/3: 0.5 + (0.3 − 0.5)/3 = 0.43333; layer 2: 2.667 -> 0.3 + 2/3·0.4 = 0.56667."""
    grad = [0, 0.5, 0.3, 0.7, 1]
    values = [evaluate_setting("x", grad, i / 3) for i in range(4)]
    assert values == pytest.approx([0.0, 0.43333333, 0.56666667, 1.0])


def test_filter_list_first_substring_match_wins():
    setting = [{"filter": "self_attn", "value": [0, 1]}, {"filter": "mlp", "value": 0.9}, {"value": 0.5}]
    assert evaluate_setting("model.layers.3.self_attn.q_proj.weight", setting, 0.25) == pytest.approx(0.25)
    assert evaluate_setting("model.layers.3.mlp.up_proj.weight", setting, 0.25) == pytest.approx(0.9)
    assert evaluate_setting("model.embed_tokens.weight", setting, 0.0) == pytest.approx(0.5)
    assert evaluate_setting("lm_head.weight", [{"filter": "mlp", "value": 1}], 0.0) is None


def test_source_parameters_override_slice_then_global():
    cfg = parse_config({"merge_method": "ties", "base_model": "b", "parameters": {"density": 0.2, "weight": 1.0},
                        "slices": [{"sources": [{"model": "b", "layer_range": [0, 2]},
                                                {"model": "a", "layer_range": [0, 2],
                                                 "parameters": {"weight": [0.0, 2.0]}}],
                                    "parameters": {"density": 0.7}}]})
    sl = cfg.slices[0]
    shared, per_input = resolve_tensor_parameters(cfg.method, cfg, sl.parameters, sl.sources, 0,
                                                  "model.layers.1.mlp.up_proj.weight",
                                                  ["model.layers.1.mlp.up_proj.weight"] * 2, 0.5)
    assert shared["normalize"] is True and shared["lambda"] == 1.0
    assert per_input[0] == {}  # the base takes no non-base parameters
    assert per_input[1] == {"weight": pytest.approx(1.0), "density": pytest.approx(0.7)}


def test_errors_name_file_line_and_field(tmp_path):
    f = tmp_path / "merge.yml"
    f.write_text("models:\n  - model: a\nmerge_method: slerp\nbase_model: a\nparameters:\n  t: [0, 1.5]\n")
    with pytest.raises(ConfigError, match=r"merge.yml:6: t .*outside \[0, 1\]"):
        load_config(f)
    f.write_text("models:\n  - model: a\n    parameters:\n      wieght: 1\nmerge_method: linear\n")
    with pytest.raises(ConfigError, match=r"merge.yml:4: wieght \(models\[0\], model a\): unknown parameter"):
        load_config(f)
    f.write_text("models:\n  - model: a\nmerge_method: frankenmerge\n")
    with pytest.raises(ConfigError, match=r"merge.yml:3: merge_method: unknown merge method 'frankenmerge'"):
        load_config(f)
    f.write_text("models:\n  - model: a\nmerge_method: linear\nembed_slerp: true\n")
    with pytest.raises(ConfigError, match=r"merge.yml:4: embed_slerp: unknown key"):
        load_config(f)


@pytest.mark.parametrize("raw, message", [
    ({"merge_method": "linear"}, "exactly one of `models` or `slices`"),
    ({"merge_method": "passthrough", "slices": [{"sources": [{"model": "a", "layer_range": [4, 2]}]}]},
     "layer_range must be"),
    ({"merge_method": "linear", "slices": [{"sources": [{"model": "a", "layer_range": [0, 2]},
                                                        {"model": "b", "layer_range": [0, 3]}]}]},
     "same number of layers"),
    ({"merge_method": "linear", "models": [{"model": "a"}], "dtype": "float8"}, "unknown dtype"),
])
def test_structural_errors(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_example_recipes_hold_valid_merge_configs():
    """Every recipes/examples/merge/*.yml stage of kind `merge` validates (no model is opened)."""
    from pathlib import Path

    import yaml

    from podium.merging.stage import MergeStageConfig, build_merge_config

    files = sorted((Path(__file__).parents[2] / "recipes" / "examples" / "merge").glob("*.yml"))
    assert len(files) >= 2
    for f in files:
        for st in yaml.safe_load(f.read_text())["stages"]:
            assert st["kind"] == "merge"
            fields = {k: v for k, v in st.items() if k not in {"name", "kind"}}
            cfg = build_merge_config(MergeStageConfig.model_validate(fields), origin=str(f))
            assert cfg.merge_method in {"slerp", "passthrough"}
        assert load_config(f).merge_method == cfg.merge_method  # `podium merge RECIPE OUT` reads it too


def test_recipe_stage_config_errors_name_the_recipe_line(tmp_path):
    """`podium merge RECIPE OUT` reads the recipe's one merge stage; a mistake inside its inline
    config names the recipe file and the line within the stage (podium.config's YAML loader)."""
    f = tmp_path / "recipe.yaml"
    f.write_text("name: r\nstages:\n  - name: merge\n    kind: merge\n    config:\n      merge_method: slerp\n"
                 "      base_model: a\n      parameters:\n        t: 2.0\n      models:\n        - model: a\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml:9: t \(top level\): slerp t=2.0 is outside \[0, 1\]"):
        load_config(f)


def test_yaml_mistakes_are_config_errors_with_a_line(tmp_path):
    f = tmp_path / "merge.yml"
    f.write_text("merge_method: linear\nmodels:\n  - model: a\nmerge_method: ties\n")
    with pytest.raises(ConfigError, match=r"merge.yml:4: duplicate key 'merge_method'"):
        load_config(f)
    f.write_text("merge_method: linear\nmodels: [\n")
    with pytest.raises(ConfigError, match=r"merge.yml:\d+: invalid YAML"):
        load_config(f)


def test_dtype_names_come_from_the_one_table():
    """Every alias the models' loader accepts is a valid merge dtype, and no other."""
    from podium.models.dtypes import DTYPES

    for name in DTYPES:
        assert parse_config({"merge_method": "linear", "models": [{"model": "a"}], "dtype": name}).dtype == name
    with pytest.raises(ConfigError, match="unknown dtype 'float64'"):
        parse_config({"merge_method": "linear", "models": [{"model": "a"}], "out_dtype": "float64"})
