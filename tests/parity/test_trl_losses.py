"""Parity with TRL 1.16.0's own DPO loss code (``DPOTrainer._compute_loss``) on random sequence log-probs.

TRL computes the loss inside ``_compute_loss(model, inputs)``, which runs the model. We give it a
stand-in model that returns chosen and rejected sequence log-probs as TRL's fused LM head would
(per-token log-probs whose sum over the completion is the sequence log-prob), precomputed reference
log-probs in the batch, and a trainer object carrying only the attributes ``DPOTrainer.__init__``
sets from a ``DPOConfig``. TRL returns the batch mean; per-example losses come from batches of one.
Compared: loss, gradient w.r.t. the policy log-probs, rewards, margins, accuracies, log-probs.

Definitional notes (see the podium docstrings): TRL's ``ipo`` divides log-ratios by completion
length (podium does too); TRL's ``sppo_hard`` is (rho_w - 1/(2 beta))^2 + (rho_l + 1/(2 beta))^2 with
no 1/2 factor (podium's too); TRL 1.16 has no label smoothing for ``sigmoid`` (cDPO is compared with
TRL's ``aot`` at batch size 1, where its sorting is the identity); TRL's RPO is
``["sigmoid", "sft"]`` with a batch token-mean NLL (compared with equal chosen lengths). Also TRL's further
loss types (exo_pair, nca_pair, robust, bco_pair, apo_zero, apo_down, discopop, sigmoid_norm, and f-DPO scores);
aot and aot_unpaired sort the batch, so they are compared as a whole batch only. The model-level parity of every
objective is tests/parity/test_trl_objectives.py.
"""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from podium.losses import (
    aot_loss,
    aot_unpaired_loss,
    apo_down_loss,
    apo_zero_loss,
    bco_pair_loss,
    discopop_loss,
    dpo_loss,
    exo_pair_loss,
    hinge_loss,
    ipo_loss,
    nca_pair_loss,
    robust_loss,
    rpo_loss,
    sigmoid_norm_loss,
    sppo_hard_loss,
)

pytestmark = pytest.mark.parity

trl = pytest.importorskip("trl")
if trl.__version__ != "1.16.0":
    pytest.skip(f"parity is pinned to trl 1.16.0, found {trl.__version__}", allow_module_level=True)

from trl import DPOConfig, DPOTrainer  # noqa: E402  (after the version guard)

B, PROMPT, T = 8, 3, 40
RTOL = 1e-5


class _Accelerator:
    """Single-process accelerator: gathers are the identity."""

    device = torch.device("cpu")

    def gather(self, x):
        return x

    gather_for_metrics = gather


class _SequenceLogpsModel(torch.nn.Module):
    """A causal LM stand-in with TRL's fused-LM-head output: per-token log-probs [2B, T-1].

    The whole sequence log-prob sits on the first completion token (the others are 0), so TRL's
    sum over the sequence reproduces it exactly.
    """

    def __init__(self, logps: torch.Tensor):
        super().__init__()
        self.logps = logps

    def forward(self, input_ids, attention_mask=None, labels=None, use_cache=None, fused_lm_head=False):
        assert fused_lm_head
        first = torch.zeros(input_ids.shape[1] - 1, dtype=self.logps.dtype)
        first[PROMPT - 1] = 1.0
        log_probs = self.logps[:, None] * first
        zeros = torch.zeros_like(log_probs)
        return SimpleNamespace(
            log_probs=log_probs,
            entropy=zeros,
            mean_logits=zeros,
            is_top1=torch.zeros_like(zeros, dtype=torch.bool),
        )


def trl_dpo(tmp_path, loss_type, beta, pc, pr, rc, rr, chosen_lengths, rejected_lengths, **config):
    """Run TRL's ``DPOTrainer._compute_loss`` on sequence log-probs; returns (mean loss, logged metrics)."""
    args = DPOConfig(
        output_dir=str(tmp_path),
        loss_type=loss_type,
        beta=beta,
        precompute_ref_log_probs=True,
        report_to="none",
        bf16=False,
        use_cpu=True,
        **config,
    )
    trainer = DPOTrainer.__new__(DPOTrainer)
    # The attributes DPOTrainer.__init__ derives from args (trl 1.16.0 dpo_trainer.py, "Training arguments").
    trainer.args = args
    trainer.beta = args.beta
    trainer.precompute_ref_logps = args.precompute_ref_log_probs
    trainer.loss_types = args.loss_type
    trainer.loss_weights = args.loss_weights or [1.0] * len(args.loss_type)
    trainer.ld_alpha = args.ld_alpha
    trainer.f_divergence_type = args.f_divergence_type
    trainer.f_alpha_divergence_coef = args.f_alpha_divergence_coef
    trainer.label_smoothing = args.label_smoothing
    trainer.use_weighting = args.use_weighting
    trainer.aux_loss_enabled = False
    trainer.accelerator = _Accelerator()
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    trainer._total_train_tokens = 0
    trainer._tp_size = 1
    model = _SequenceLogpsModel(torch.cat([pc, pr]))
    trainer.model, trainer.ref_model = model, None

    n = pc.shape[0]
    lengths = torch.cat([chosen_lengths, rejected_lengths])
    positions = torch.arange(T)
    completion_mask = ((positions >= PROMPT) & (positions < PROMPT + lengths[:, None])).long()
    inputs = {
        "input_ids": torch.ones(2 * n, T, dtype=torch.long),
        "attention_mask": (positions < PROMPT + lengths[:, None]).long(),
        "completion_mask": completion_mask,
        "ref_chosen_logps": rc,
        "ref_rejected_logps": rr,
    }
    loss = trainer._compute_loss(model, inputs, return_outputs=False)
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    return loss, metrics


def random_batch(seed, dtype=torch.float32, equal_chosen_lengths=False):
    g = torch.Generator().manual_seed(seed)
    rc = -torch.empty(B, dtype=torch.float64).uniform_(5, 60, generator=g)
    rr = -torch.empty(B, dtype=torch.float64).uniform_(5, 60, generator=g)
    pc = rc + 3 * torch.randn(B, generator=g, dtype=torch.float64)
    pr = rr + 3 * torch.randn(B, generator=g, dtype=torch.float64)
    lc = torch.randint(1, T - PROMPT, (B,), generator=g)
    if equal_chosen_lengths:
        lc = lc[:1].expand(B).clone()
    lr = torch.randint(1, T - PROMPT, (B,), generator=g)
    return [x.to(dtype) for x in (pc, pr, rc, rr)], lc, lr


CASES = {
    # name: (trl loss_type, trl config, podium function, podium kwargs(lc, lr), beta)
    "sigmoid": (["sigmoid"], {}, dpo_loss, lambda lc, lr: {}, 0.1),
    "ipo": (["ipo"], {}, ipo_loss, lambda lc, lr: {"chosen_lengths": lc, "rejected_lengths": lr}, 0.1),
    "hinge": (["hinge"], {}, hinge_loss, lambda lc, lr: {}, 0.5),
    "sppo_hard": (["sppo_hard"], {}, sppo_hard_loss, lambda lc, lr: {}, 0.1),
    "cdpo_as_aot_b1": (
        ["aot"],
        {"label_smoothing": 0.1},
        dpo_loss,
        lambda lc, lr: {"label_smoothing": 0.1},
        0.1,
    ),
    "rpo_as_sigmoid_sft": (
        ["sigmoid", "sft"],
        {"loss_weights": [1.0, 0.5]},
        rpo_loss,
        lambda lc, lr: {"chosen_lengths": lc, "alpha": 0.5},
        0.1,
    ),
    # TRL 1.16's further loss types, and f-DPO's scores on two of them
    "exo_pair": (["exo_pair"], {"label_smoothing": 1e-3}, exo_pair_loss, lambda lc, lr: {"label_smoothing": 1e-3}, 0.1),
    "nca_pair": (["nca_pair"], {}, nca_pair_loss, lambda lc, lr: {}, 0.1),
    "robust": (["robust"], {"label_smoothing": 0.2}, robust_loss, lambda lc, lr: {"label_smoothing": 0.2}, 0.1),
    "bco_pair": (["bco_pair"], {}, bco_pair_loss, lambda lc, lr: {}, 0.1),
    "apo_zero": (["apo_zero"], {}, apo_zero_loss, lambda lc, lr: {}, 0.1),
    "apo_down": (["apo_down"], {}, apo_down_loss, lambda lc, lr: {}, 0.1),
    "discopop": (["discopop"], {"discopop_tau": 0.2}, discopop_loss, lambda lc, lr: {"discopop_tau": 0.2}, 0.1),
    "sigmoid_norm": (["sigmoid_norm"], {}, sigmoid_norm_loss,
                     lambda lc, lr: {"chosen_lengths": lc, "rejected_lengths": lr}, 0.1),
    "js_sigmoid": (["sigmoid"], {"f_divergence_type": "js_divergence"}, dpo_loss,
                   lambda lc, lr: {"f_divergence_type": "js_divergence"}, 0.1),
    "alpha_hinge": (["hinge"], {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.7}, hinge_loss,
                    lambda lc, lr: {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.7}, 0.1),
    # batch-level: sorted over the batch, compared as a whole batch only
    "aot": (["aot"], {"label_smoothing": 0.1}, aot_loss, lambda lc, lr: {"label_smoothing": 0.1}, 0.1),
    "aot_unpaired": (["aot_unpaired"], {}, aot_unpaired_loss, lambda lc, lr: {}, 0.1),
}
BATCH_LEVEL = ("aot", "aot_unpaired")


def assert_rel(actual, expected, rtol=RTOL):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * expected.abs().max().item() * 1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_losses_rewards_and_gradients_match_trl(case, dtype, tmp_path):
    loss_type, config, podium_loss, extra, beta = CASES[case]
    if case == "alpha_hinge" and dtype == torch.float64:
        pytest.skip("TRL 1.16's alpha-divergence clamp table has no float64 entry (KeyError inside TRL)")
    seed = sorted(CASES).index(case)
    (pc, pr, rc, rr), lc, lr = random_batch(seed, dtype=dtype, equal_chosen_lengths=case.startswith("rpo"))

    # Per example: TRL on batches of one (aot's sorting is the identity there).
    if case in BATCH_LEVEL:
        return _compare_whole_batch(tmp_path, loss_type, config, podium_loss, extra, beta, pc, pr, rc, rr, lc, lr)
    trl_losses, trl_chosen, trl_rejected = [], [], []
    for i in range(B):
        s = slice(i, i + 1)
        loss, m = trl_dpo(tmp_path, loss_type, beta, pc[s], pr[s], rc[s], rr[s], lc[s], lr[s], **config)
        trl_losses.append(loss)
        trl_chosen.append(m["rewards/chosen"])
        trl_rejected.append(m["rewards/rejected"])
    ours = podium_loss(pc, pr, rc, rr, beta=beta, **extra(lc, lr))
    assert_rel(ours.losses, torch.stack(trl_losses).to(dtype))
    assert_rel(ours.chosen_rewards.double(), torch.tensor(trl_chosen, dtype=torch.float64))
    assert_rel(ours.rejected_rewards.double(), torch.tensor(trl_rejected, dtype=torch.float64))
    assert ours.losses.std() > 0  # a varied batch, not a constant

    if case.startswith("cdpo"):
        return  # aot sorts the batch: only batches of one are cDPO

    _compare_whole_batch(tmp_path, loss_type, config, podium_loss, extra, beta, pc, pr, rc, rr, lc, lr)


def _compare_whole_batch(tmp_path, loss_type, config, podium_loss, extra, beta, pc, pr, rc, rr, lc, lr):
    """Whole batch: TRL's mean loss, its gradient w.r.t. the policy log-probs and its logged metrics."""
    pc_t, pr_t = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    loss, m = trl_dpo(tmp_path, loss_type, beta, pc_t, pr_t, rc, rr, lc, lr, **config)
    loss.backward()
    pc_o, pr_o = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    ours = podium_loss(pc_o, pr_o, rc, rr, beta=beta, **extra(lc, lr))
    ours.losses.mean().backward()
    assert_rel(ours.losses.mean().detach(), loss.detach())
    assert_rel(pc_o.grad, pc_t.grad)
    assert_rel(pr_o.grad, pr_t.grad)
    margins = ours.chosen_rewards - ours.rejected_rewards
    assert m["rewards/margins"] == pytest.approx(margins.mean().item(), rel=RTOL)
    assert m["rewards/accuracies"] == pytest.approx((margins > 0).float().mean().item(), rel=RTOL)
    assert m["logps/chosen"] == pytest.approx(pc.mean().item(), rel=RTOL)
    assert m["logps/rejected"] == pytest.approx(pr.mean().item(), rel=RTOL)
