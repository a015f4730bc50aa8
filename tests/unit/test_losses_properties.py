"""Property tests for every loss in the registry: detached rewards, finite gradients, preference direction."""

import inspect

import pytest
import torch
import torch.nn.functional as F

from podium.errors import ConfigError, DataError
from podium.losses import (
    LOSS_SPECS,
    LOSSES,
    check_records,
    dpo_loss,
    dpop_loss,
    get_loss,
    gpm_loss,
    gpm_preference_matrix,
    gpm_score,
    sppo_hard_loss,
    sppo_loss,
)

B = 6
POLICY = [name for name, spec in LOSS_SPECS.items() if spec.kind == "policy"]
# Policy objectives on pairs against a reference: rewards beta * rho, chosen preferred lowers the loss.
PAIRED = [n for n in POLICY if not LOSS_SPECS[n].unpaired and not LOSS_SPECS[n].reference_free]
REFERENCE_FREE = [n for n in POLICY if LOSS_SPECS[n].reference_free]
UNPAIRED = [n for n in POLICY if LOSS_SPECS[n].unpaired]
POLICY_SIDE = ("nll_chosen_logps", "prompt_logps")  # the policy's own log-probs under other names


def make_inputs(spec, seed=0, scale=30.0, requires_grad=True):
    """Random [B] inputs for a spec: log-probs < 0, lengths >= 1, probabilities in (0, 1), GPM [B, 8]."""
    g = torch.Generator().manual_seed(seed)
    inputs = {}
    for name in spec.inputs:
        if name.endswith("_logps"):
            x = -scale * torch.rand(B, generator=g, dtype=torch.float64)
        elif name.endswith("_lengths"):
            x = torch.randint(1, 40, (B,), generator=g)
        elif name.endswith("_prob"):
            x = torch.rand(B, generator=g, dtype=torch.float64)
        elif name.endswith("_embeddings"):
            x = torch.randn(B, 8, generator=g, dtype=torch.float64)
        elif name == "label":
            x = (torch.arange(B) % 2).to(torch.float64)
        else:  # scores, rewards
            x = torch.randn(B, generator=g, dtype=torch.float64)
        policy_side = name.startswith("policy_") or name in POLICY_SIDE
        if requires_grad and x.is_floating_point() and name != "label" and (policy_side or spec.kind != "policy"):
            x.requires_grad_(True)
        inputs[name] = x
    return inputs


def hyper(spec):
    values = {"beta": 0.1, "alpha": 1.0, "lambda_": 50.0, "label_smoothing": 0.1, "tau": 0.1,
              "f_divergence_type": "reverse_kl", "f_alpha_divergence_coef": 0.5, "discopop_tau": 0.05,
              "desirable_weight": 1.0, "undesirable_weight": 1.0, "cpo_alpha": 1.0, "simpo_gamma": 0.5,
              "alphapo_alpha": 0.0}
    return {h: values[h] for h in spec.hyperparameters}


def test_registry_names_are_exactly_the_objectives():
    assert set(LOSSES) == {
        "dpo", "ipo", "hinge", "rpo", "dpop", "sppo", "sppo_single", "sppo_hard", "gpo", "reward", "gpm",
        # TRL 1.16's DPOTrainer loss types, KTOTrainer's, and the experimental CPO (SimPO) and ORPO trainers
        "sigmoid", "sigmoid_norm", "exo_pair", "nca_pair", "robust", "bco_pair", "aot", "aot_unpaired",
        "apo_zero", "apo_down", "discopop", "sft", "kto", "apo_zero_unpaired", "cpo", "cpo_hinge", "cpo_ipo",
        "simpo", "orpo",
    }  # fmt: skip
    assert set(LOSS_SPECS) == set(LOSSES)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_spec_matches_function_signature(name):
    """Every declared input and hyperparameter is a parameter of the function, and every required one is declared."""
    params = inspect.signature(LOSSES[name]).parameters
    spec = LOSS_SPECS[name]
    assert set(spec.inputs) | set(spec.hyperparameters) <= set(params)
    required = {p for p, v in params.items() if v.default is inspect.Parameter.empty}
    assert required <= set(spec.inputs)
    assert set(spec.record_fields) <= set(spec.inputs)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_rewards_detached_and_gradients_finite(name):
    spec = LOSS_SPECS[name]
    inputs = make_inputs(spec)
    out = LOSSES[name](**inputs, **hyper(spec))
    assert out.losses.shape == (B,)
    assert out.losses.requires_grad
    if out.chosen_rewards is None:  # sft: no rewards
        assert name == "sft" and out.rejected_rewards is None
    else:
        assert out.chosen_rewards.shape == out.rejected_rewards.shape == (B,)
        assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
    assert all(not v.requires_grad for v in (out.metrics or {}).values())
    out.losses.sum().backward()
    grads = [x.grad for x in inputs.values() if x.requires_grad and x.grad is not None]  # KTO's KL is detached
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", PAIRED)
def test_policy_rewards_are_beta_times_log_ratio(name):
    spec = LOSS_SPECS[name]
    x = make_inputs(spec, seed=1)
    out = LOSSES[name](**x, **hyper(spec))
    beta = hyper(spec)["beta"]
    torch.testing.assert_close(
        out.chosen_rewards, beta * (x["policy_chosen_logps"] - x["reference_chosen_logps"])
    )
    torch.testing.assert_close(
        out.rejected_rewards, beta * (x["policy_rejected_logps"] - x["reference_rejected_logps"])
    )


@pytest.mark.parametrize("name", REFERENCE_FREE)
def test_reference_free_rewards_are_beta_times_the_compared_log_probs(name):
    """CPO: beta * summed log-probs; SimPO, CPO-IPO and ORPO: beta * average log-probs (as TRL logs them)."""
    spec = LOSS_SPECS[name]
    x = make_inputs(spec, seed=1)
    out = LOSSES[name](**x, **hyper(spec))
    if out.chosen_rewards is None:
        return  # sft
    lengths = (x["chosen_lengths"], x["rejected_lengths"]) if spec.average_logps else (1, 1)
    # ORPO computes in fp32, as TRL (its odds need log1mexp of the average log-prob)
    torch.testing.assert_close(out.chosen_rewards, 0.1 * (x["policy_chosen_logps"] / lengths[0]).detach(),
                               check_dtype=False)
    torch.testing.assert_close(out.rejected_rewards, 0.1 * (x["policy_rejected_logps"] / lengths[1]).detach(),
                               check_dtype=False)


@pytest.mark.parametrize("name", UNPAIRED)
def test_unpaired_rewards_and_direction(name):
    """KTO: beta * rho on the desirable examples (chosen) and the undesirable ones (rejected), NaN elsewhere;
    raising a desirable completion's log-prob lowers its loss, raising an undesirable one's raises it."""
    spec = LOSS_SPECS[name]
    x = make_inputs(spec, seed=4, requires_grad=False)
    out = LOSSES[name](**x, **hyper(spec))
    desirable = x["label"].bool()
    rho = 0.1 * (x["policy_logps"] - x["reference_logps"])
    torch.testing.assert_close(out.chosen_rewards[desirable], rho[desirable])
    torch.testing.assert_close(out.rejected_rewards[~desirable], rho[~desirable])
    assert out.chosen_rewards[~desirable].isnan().all() and out.rejected_rewards[desirable].isnan().all()
    up = LOSSES[name](**{**x, "policy_logps": x["policy_logps"] + 0.5}, **hyper(spec)).losses
    assert (up[desirable] < out.losses[desirable]).all() and (up[~desirable] > out.losses[~desirable]).all()


@pytest.mark.parametrize("name", POLICY)
def test_gradients_finite_at_extreme_log_probs(name):
    """Sequence log-probs of long completions reach -1e4; logsigmoid-based losses must not overflow."""
    spec = LOSS_SPECS[name]
    x = make_inputs(spec, seed=2, scale=1e4)
    out = LOSSES[name](**x, **hyper(spec))
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all()
    grads = [x[k].grad for k in x if k.startswith("policy_") or k in POLICY_SIDE]
    assert grads and all(torch.isfinite(g).all() for g in grads if g is not None)


@pytest.mark.parametrize("name", PAIRED + [n for n in REFERENCE_FREE if n != "sft"])
def test_preferring_chosen_lowers_the_loss(name):
    """From policy == reference, raising the chosen log-prob (or lowering the rejected one) lowers the loss.

    Targets are set so that the chosen side is the preferred one: p_w = 0.9 > 1/2 > p_l = 0.1,
    P(w > l) = 0.9, GPM scores s_w = 0.3 > 0 > s_l = -0.3. apo_down lowers both likelihoods by design
    (the chosen responses are worse than the model's own), so only its rejected direction is checked;
    DiscoPOP is not monotone near a zero margin (its non-convex region), so it starts from beta * margin = 1.
    Reference-free objectives start from equal chosen and rejected log-probs and lengths.
    """
    spec = LOSS_SPECS[name]
    x = make_inputs(spec, seed=3, requires_grad=False)
    if spec.reference_free:
        x["policy_chosen_logps"] = x["policy_rejected_logps"].clone()
        x["chosen_lengths"] = x["rejected_lengths"].clone()
    else:
        x["policy_chosen_logps"] = x["reference_chosen_logps"].clone() + (10.0 if name == "discopop" else 0.0)
        x["policy_rejected_logps"] = x["reference_rejected_logps"].clone()
    fixed = {
        "chosen_prob": 0.9,
        "rejected_prob": 0.1,
        "pair_prob": 0.9,
        "chosen_score": 0.3,
        "rejected_score": -0.3,
    }
    for key, value in fixed.items():
        if key in x:
            x[key] = torch.full((B,), value, dtype=torch.float64)
    loss = LOSSES[name]
    h = hyper(spec)
    base = loss(**x, **h).losses
    up = loss(**{**x, "policy_chosen_logps": x["policy_chosen_logps"] + 0.5}, **h).losses
    down = loss(**{**x, "policy_rejected_logps": x["policy_rejected_logps"] - 0.5}, **h).losses
    assert (down < base).all()
    assert name == "apo_down" or (up < base).all()


def test_preference_models_prefer_the_chosen():
    r_hi, r_lo = torch.tensor([2.0]), torch.tensor([0.0])
    bt = LOSSES["reward"]
    assert bt(r_hi, r_lo).losses < bt(r_lo, r_hi).losses
    g = torch.Generator().manual_seed(4)
    v_w, v_l = torch.randn(B, 8, generator=g), torch.randn(B, 8, generator=g)
    s = gpm_score(v_w, v_l)
    forward, backward = gpm_loss(v_w, v_l).losses, gpm_loss(v_l, v_w).losses
    assert ((forward < backward) == (s > 0)).all()


def test_dpop_with_lambda_zero_is_dpo():
    x = make_inputs(LOSS_SPECS["dpop"], seed=5)
    # rho_w of both signs so the penalty's max(0, -rho_w) is both active and inactive
    assert (x["policy_chosen_logps"] < x["reference_chosen_logps"]).any()
    assert (x["policy_chosen_logps"] > x["reference_chosen_logps"]).any()
    for eps in (0.0, 0.2):
        a = dpop_loss(**x, beta=0.3, lambda_=0.0, label_smoothing=eps)
        b = dpo_loss(**x, beta=0.3, label_smoothing=eps)
        assert torch.equal(a.losses, b.losses)
        assert torch.equal(a.chosen_rewards, b.chosen_rewards)
    assert not torch.equal(dpop_loss(**x, beta=0.3, lambda_=5.0).losses, dpo_loss(**x, beta=0.3).losses)


def test_label_smoothing_zero_is_plain_dpo():
    x = make_inputs(LOSS_SPECS["dpo"], seed=6)
    logits = 0.1 * (
        (x["policy_chosen_logps"] - x["reference_chosen_logps"])
        - (x["policy_rejected_logps"] - x["reference_rejected_logps"])
    )
    torch.testing.assert_close(dpo_loss(**x, beta=0.1, label_smoothing=0.0).losses, -F.logsigmoid(logits))
    torch.testing.assert_close(
        dpo_loss(**x, beta=0.1, label_smoothing=1e-9).losses, -F.logsigmoid(logits), rtol=1e-7, atol=1e-7
    )
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(**x, beta=0.1, label_smoothing=0.5)


def test_sppo_hard_is_soft_with_certain_outcomes():
    x = make_inputs(LOSS_SPECS["sppo_hard"], seed=7)
    ones = torch.ones(B, dtype=torch.float64)
    for beta in (0.1, 0.001):
        soft = sppo_loss(**x, chosen_prob=ones, rejected_prob=0 * ones, beta=beta)
        hard = sppo_hard_loss(**x, beta=beta)
        torch.testing.assert_close(hard.losses, soft.losses, rtol=1e-12, atol=0)


def test_gpm_score_is_skew_symmetric():
    g = torch.Generator().manual_seed(8)
    v_i, v_j = torch.randn(B, 6, generator=g), torch.randn(B, 6, generator=g)
    gates = torch.rand(B, 3, generator=g)
    s = gpm_score(v_i, v_j, gates)
    assert torch.equal(gpm_score(v_j, v_i, gates), -s)
    assert torch.equal(gpm_score(v_i, v_i, gates), torch.zeros(B))
    # normalised embeddings and |lambda| <= 1 bound the score by 1 (Cauchy-Schwarz)
    assert (s.abs() <= 1.0 + 1e-6).all()


def test_gpm_preference_matrix_properties():
    g = torch.Generator().manual_seed(9)
    V, gates = torch.randn(5, 8, generator=g), torch.rand(4, generator=g)
    P = gpm_preference_matrix(V, gates, tau=0.1)
    assert P.shape == (5, 5)
    assert torch.equal(P.diagonal(), torch.full((5,), 0.5))
    torch.testing.assert_close(P + P.T, torch.ones(5, 5))
    # each entry is the pairwise score through sigma((s_ij - s_ji) / tau) (the GPM code's self-play
    # convention, the default) or sigma(s_ij / tau) (the loss's)
    i, j = torch.triu_indices(5, 5, offset=1)
    s_ij, s_ji = gpm_score(V[i], V[j], gates), gpm_score(V[j], V[i], gates)
    torch.testing.assert_close(P[i, j], torch.sigmoid((s_ij - s_ji) / 0.1))
    loss_P = gpm_preference_matrix(V, gates, tau=0.1, probability="loss")
    torch.testing.assert_close(loss_P[i, j], torch.sigmoid(s_ij / 0.1))


def test_gpm_rejects_bad_shapes():
    with pytest.raises(ValueError, match="even"):
        gpm_score(torch.randn(2, 5), torch.randn(2, 5))
    with pytest.raises(ValueError, match="k = 2"):
        gpm_score(torch.randn(2, 4), torch.randn(2, 4), torch.ones(3))


def test_unknown_objective_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown objective 'dpoo'.*sppo_hard"):
        get_loss("dpoo")


def test_check_records_names_record_and_field():
    good = [{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_prob": 0.8, "rejected_prob": 0.2}]
    check_records("sppo", good, source="pairs.jsonl")
    check_records("dpo", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match=r"pairs.jsonl: record 2: field 'rejected_prob' is missing.*'sppo'"):
        check_records("sppo", good + [{"chosen_prob": 0.5}], source="pairs.jsonl")
    with pytest.raises(DataError, match=r"record 1: field 'pair_prob'.*\[0, 1\]"):
        check_records("sppo_single", [{"pair_prob": 1.5}])
    with pytest.raises(DataError, match="finite number"):
        check_records("gpo", [{"chosen_score": "high", "rejected_score": 0.0}])
    with pytest.raises(DataError, match="finite number"):
        check_records("gpo", [{"chosen_score": float("nan"), "rejected_score": 0.0}])
