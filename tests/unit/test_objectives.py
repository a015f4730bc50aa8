"""The objective table (podium.losses.LOSS_SPECS) is the one source of objectives, settings, card labels and docs."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from podium.cards.methods import CITATIONS, objective_method, stage_method
from podium.losses import LOSS_SPECS, SELF_PLAY_OBJECTIVES, SETTINGS, objectives_markdown
from podium.selfplay.sppo import SelfPlayConfig
from podium.training.train import BUILDERS, TrainConfig

ROOT = Path(__file__).parents[2]


def test_docs_table_is_rendered_from_the_objective_table():
    text = (ROOT / "docs" / "OBJECTIVES.md").read_text()
    block = text.split("<!-- objectives:begin -->\n", 1)[1].split("<!-- objectives:end -->", 1)[0]
    assert block == objectives_markdown(), "docs/OBJECTIVES.md is stale: regenerate it (command in the file)"


def test_every_top_level_setting_is_a_train_config_field_with_the_tables_default_and_bounds():
    for key, setting in SETTINGS.items():
        if "." in key:
            continue
        field = TrainConfig.model_fields[setting.field]
        assert field.default == setting.default, key
        assert (field.alias or setting.field) == key
        assert field.description == setting.doc


@pytest.mark.parametrize("objective", sorted(LOSS_SPECS))
def test_loss_kwargs_are_exactly_the_loss_functions_settings(objective):
    spec = LOSS_SPECS[objective]
    assert spec.kind in BUILDERS
    cfg = TrainConfig.model_validate({"model": "m", "data": "d", "objective": objective})
    policy_args = {SETTINGS[k].arg for k in spec.settings if "." not in k and SETTINGS[k].arg}
    assert set(cfg.loss_kwargs()) == policy_args
    assert cfg.learning_rate == spec.defaults["learning_rate"]


@pytest.mark.parametrize("bad, key", [
    ({"beta": 0}, "beta"),
    ({"beta": -1}, "beta"),
    ({"objective": "dpop", "lambda": -1}, "lambda"),
    ({"objective": "rpo", "alpha": -0.5}, "alpha"),
    ({"label_smoothing": 0.5}, "label_smoothing"),
    ({"objective": "dpo", "lambda": 5}, "lambda"),  # a setting DPO does not use
    ({"objective": "reward", "beta": 0.1}, "beta"),
    ({"objective": "gpm", "head": {"tau": 0}}, "head.tau"),
    ({"objective": "gpm", "head": {"k": 1.5}}, "head.k"),
    ({"objective": "gpm", "head": {"gates": "relu"}}, "head.gates"),
    ({"objective": "gpm", "head": {"kk": 2}}, "head.kk"),
    ({"objective": "dpo", "head": {"k": 2}}, "head.k"),
    ({"objective": "dpx"}, "objective"),
])
def test_out_of_range_or_unused_settings_are_errors_at_their_key(bad, key):
    with pytest.raises(ValidationError) as e:
        TrainConfig.model_validate({"model": "m", "data": "d", **bad})
    assert [".".join(map(str, err["loc"])) for err in e.value.errors()] == [key]


def test_a_recipe_error_names_file_line_and_key(tmp_path):
    from podium.errors import ConfigError
    from podium.planning import make_plan

    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - name: dpo\n    kind: train\n    model: m\n    data: d.jsonl\n"
                      "    objective: dpo\n    lambda: 5\n")
    with pytest.raises(ConfigError, match=r"r.yaml:7: stage 'dpo': key 'lambda': objective 'dpo' does not use"):
        make_plan(str(recipe), output=str(tmp_path / "run"))


def test_self_play_objectives_come_from_the_table():
    assert SELF_PLAY_OBJECTIVES == ("sppo", "sppo_single", "sppo_hard", "gpo")
    assert SelfPlayConfig.model_validate({"model": "m", "objective": "gpo"}).objective == "gpo"
    with pytest.raises(ValidationError, match="not a self-play objective"):
        SelfPlayConfig.model_validate({"model": "m", "objective": "dpo"})


def test_card_labels_each_stage_by_its_real_method():
    """reward, gpm and rpo stages were labelled "Direct Preference Optimization" before the table existed."""
    assert stage_method("train", {"objective": "reward"}).title == "Bradley–Terry reward model"
    assert stage_method("train", {"objective": "gpm"}).title == "General Preference embedding Model (GPM)"
    assert stage_method("train", {"objective": "rpo"}).title == "DPO with an NLL term (RPO)"
    assert stage_method("train", {"objective": "dpop"}).title == "DPO-Positive (DPOP, Smaug)"
    assert stage_method("train", {}).title == "Direct Preference Optimization (DPO)"  # the train stage's default
    assert stage_method("selfplay", {"objective": "gpo"}).key == "gpo"
    for objective, spec in LOSS_SPECS.items():
        assert objective_method(objective).title == spec.title
        assert spec.method in CITATIONS, f"no citation for method {spec.method!r}"


@pytest.mark.parametrize("objective", ["reward", "gpm"])
def test_head_pooling_is_a_setting_of_preference_models(objective):
    cfg = TrainConfig.model_validate({"objective": objective, "model": "m", "data": "d.jsonl", "head": {"pooling": "last"}})
    assert cfg.head == {"pooling": "last"}
    with pytest.raises(ValidationError, match="pooling"):
        TrainConfig.model_validate({"objective": objective, "model": "m", "data": "d.jsonl", "head": {"pooling": "max"}})
    with pytest.raises(ValidationError, match="pooling"):
        TrainConfig.model_validate({"objective": "dpo", "model": "m", "data": "d.jsonl", "head": {"pooling": "last"}})
