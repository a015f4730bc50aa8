"""Divergence fails the stage (issue 13, item 5) and names a checkpoint whose weights are sound.

The probe: AdamW at lr 1e6 drove the weights to ~1e6 in one step, the loss then sat at ln(vocab) with a
gradient norm of exactly 0 from step 2, and the run ended "done". And when the non-finite check did fire,
the "last good checkpoint" it named already held poisoned weights.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from tests.loop_helpers import tiny_run

from podium.errors import ConfigError, PodiumError
from podium.training.divergence import DEAD_STEPS, LOSS_RATIO, WEIGHT_RATIO, DivergenceGuard
from podium.training.settings import TrainSettings
from podium.training.sft import SFTConfig, sft_objective


def test_lr_1e6_adamw_fails_instead_of_finishing(tmp_path):
    with pytest.raises(PodiumError, match=r"training diverged: weight norm .* exceeds 100 x its initial value .* at step 1"):
        tiny_run(tmp_path, learning_rate=1e6, max_steps=6, save_steps=1)
    assert not (tmp_path / "model.safetensors").exists()  # nothing "done" to cache
    assert not list((tmp_path / "checkpoints").glob("step-*")) if (tmp_path / "checkpoints").exists() else True


def test_last_good_checkpoint_holds_sound_weights(tmp_path):
    """Weights poisoned (finite, 1.7e19) during step 3, its loss still finite: the old loop saved step-3 and
    named it when the loss went NaN in step 4; now step 3 fails and step-2 is named and kept."""
    calls = {"n": 0}

    def poison_in_step_3(model, batch):
        calls["n"] += 1
        out = sft_objective(model, batch)
        if calls["n"] == 3:
            with torch.no_grad():
                next(model.parameters()).fill_(1.7e19)
        return out

    with pytest.raises(PodiumError, match=r"at step 3; last good checkpoint: .*step-2 ") as e:
        tiny_run(tmp_path, objective=poison_in_step_3, max_steps=6, save_steps=1)
    assert "weight norm" in str(e.value)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert kept == ["step-1", "step-2"]
    weights = load_file(str(tmp_path / "checkpoints" / "step-2" / "model.safetensors"))
    assert all(bool(torch.isfinite(t).all()) and t.abs().max() < 1e3 for t in weights.values())


def test_a_poisoned_checkpoint_is_not_named(tmp_path):
    """A checkpoint whose weights are not finite (planted, or from an older podium) is skipped and removed."""
    calls = {"n": 0}

    def nan_at_4(model, batch):
        calls["n"] += 1
        loss, m = sft_objective(model, batch)
        return (loss * float("nan") if calls["n"] == 4 else loss), m

    tiny_kw = {"max_steps": 6, "save_steps": 1, "save_total_limit": 5}
    with pytest.raises(PodiumError):
        tiny_run(tmp_path, objective=nan_at_4, **tiny_kw)
    # Poison step-3's weights behind the loop's back; resuming diverges at step 4 again.
    path = tmp_path / "checkpoints" / "step-3" / "model.safetensors"
    from safetensors.torch import save_file

    w = load_file(str(path))
    save_file({k: v.fill_(float("inf")) if v.is_floating_point() else v for k, v in w.items()}, str(path))
    # As an older podium wrote it: no file digests, so resuming does not see the change (with them it passes the
    # checkpoint over: test_checkpoint_format.py).
    state_path = tmp_path / "checkpoints" / "step-3" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    del state["files"]
    state_path.write_text(json.dumps(state))
    with pytest.raises(PodiumError, match=r"at step 4; last good checkpoint: .*step-2 "):
        tiny_run(tmp_path, **tiny_kw)  # resumes from the poisoned step-3: its loss is not finite
    assert not (tmp_path / "checkpoints" / "step-3").exists()
    tiny_run(tmp_path, **tiny_kw)  # and the next run resumes from step-2 and finishes
    assert (tmp_path / "model.safetensors").exists()


def test_dead_gradients_fail_after_a_few_steps(tmp_path):
    def flat(model, batch):  # positive loss, zero gradient: a saturated network
        loss, m = sft_objective(model, batch)
        return loss * 0 + 4.6, m

    with pytest.raises(PodiumError, match=f"gradient norm exactly 0 .* for {DEAD_STEPS} steps in a row .* at step {DEAD_STEPS}"):
        tiny_run(tmp_path, objective=flat, max_steps=6)


def test_detect_divergence_false_keeps_only_the_finite_checks(tmp_path):
    _, summary = tiny_run(tmp_path, learning_rate=1e6, max_steps=3, detect_divergence=False, with_summary=True)
    assert summary["steps"] == 3


def test_guard_thresholds():
    g = DivergenceGuard()
    g.start(2.0)
    assert g.check_loss(0.5) is None and g.first_loss == 0.5
    assert g.check_loss(LOSS_RATIO * 1.0 * 0.99) is None  # |first| < 1: the floor is 1
    assert "exceeds" in g.check_loss(LOSS_RATIO * 1.01)
    assert "non-finite loss" in g.check_loss(math.nan)
    assert g.check_weights(WEIGHT_RATIO * 2.0 * 0.99) is None
    assert "exceeds" in g.check_weights(WEIGHT_RATIO * 2.0 * 1.01)
    assert g.check_weights(math.inf) == "non-finite weight norm (inf)"
    assert g.check_grad(0.0, 0.0) is None and g.zero_grad_steps == 0  # zero loss, zero gradient: converged
    for _ in range(DEAD_STEPS - 1):
        assert g.check_grad(0.0, 1.0) is None
    assert g.check_grad(0.0, 1.0) is not None
    restored = DivergenceGuard()
    restored.load_state_dict(json.loads(json.dumps(g.state_dict())))
    assert restored.state_dict() == g.state_dict()


@pytest.mark.parametrize("lr", [0, -1e-4, math.inf, math.nan])
def test_learning_rate_must_be_positive_and_finite(lr):
    for cfg in (lambda: TrainSettings(learning_rate=lr), lambda: SFTConfig(model="m", data="d", learning_rate=lr)):
        with pytest.raises(ValueError, match="learning_rate"):
            cfg()


def test_negative_sft_lr_fails_the_plan_with_file_and_line(tmp_path):
    from podium.planning import make_plan

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\nstages:\n  - {name: base, kind: tiny_model, hidden_size: 16}\n"
                      "  - name: sft\n    kind: sft\n    model: \"@base\"\n    data: [{task: arithmetic, count: 8}]\n"
                      "    learning_rate: -1.0e-4\n")
    with pytest.raises(ConfigError, match=rf"{recipe}:8: .*learning_rate.*> 0"):
        make_plan(str(recipe), output=str(tmp_path / "run"))


def test_no_trainable_parameters_is_an_error(tmp_path):
    from podium.models.tiny import build_tiny_model
    from podium.training.loop import train_loop

    model, tok = build_tiny_model(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2)
    model.requires_grad_(False)
    with pytest.raises(PodiumError, match="no trainable parameters"):
        train_loop(model, sft_objective, [], None, TrainSettings(), tmp_path, tokenizer=tok, show_progress=False)


def test_weights_count_as_replicated_for_one_process_and_ddp_only():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from podium.training.loop_state import weights_replicated

    assert weights_replicated(SimpleNamespace(distributed_type=DistributedType.NO))
    assert weights_replicated(SimpleNamespace(distributed_type=DistributedType.MULTI_CPU))
    assert not weights_replicated(SimpleNamespace(distributed_type=DistributedType.FSDP))
    assert not weights_replicated(SimpleNamespace(distributed_type=DistributedType.DEEPSPEED))
