"""Parity with TRL 1.16 DPOTrainer: same tiny policy, a different reference, the same batch.

Loss and mean log-probs (chosen, rejected) and rewards must agree to 1e-5 relative, for TRL's
loss types sigmoid, ipo, hinge and sppo_hard (podium: dpo, ipo, hinge, sppo_hard), through
podium's tokenisation, prefix-shared forward and reference log-prob path.
"""

from __future__ import annotations

import pytest
import torch
from tests.pref_helpers import PAIRS, TINY

from podium.data.preference import tokenize_pairs
from podium.training.pair_layout import pack_pairs
from podium.training.preference_objective import PreferenceObjective
from podium.training.reference import compute_reference_logps

trl = pytest.importorskip("trl")
pytestmark = pytest.mark.parity

TRL_NAMES = {"dpo": "sigmoid", "ipo": "ipo", "hinge": "hinge", "sppo_hard": "sppo_hard"}


def trl_metrics(policy, ref, tok, rows, loss_type, beta, tmp_path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=str(tmp_path / "trl"), loss_type=[loss_type], beta=beta,
                     per_device_train_batch_size=len(rows), report_to=[], use_cpu=True, max_length=64,
                     bf16=False)  # TRL 1.16 defaults to bf16 autocast, also on CPU
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    m = trainer._metrics["train" if trainer.model.training else "eval"]
    return {"loss": loss.item(), **{k: m[k][-1] for k in
            ("logps/chosen", "logps/rejected", "rewards/chosen", "rewards/rejected", "rewards/margins")}}


def podium_metrics(policy, ref, tok, rows, name, beta):
    examples, stats = tokenize_pairs(rows, tok, 64)
    assert stats.kept == len(rows)
    ref_logps = compute_reference_logps(ref, examples, tok.pad_token_id)
    batch = pack_pairs(examples, tok.pad_token_id, prefix_sharing=True)
    batch["reference_chosen_logps"], batch["reference_rejected_logps"] = ref_logps[:, 0], ref_logps[:, 1]
    objective = PreferenceObjective(name, beta=beta)
    with torch.no_grad():
        loss_sum, metrics = objective(policy, batch)
    return {"loss": loss_sum.item() / len(rows), **{k: metrics[k].mean().item() for k in
            ("logps/chosen", "logps/rejected", "rewards/chosen", "rewards/rejected", "rewards/margins")}}


@pytest.mark.parametrize("name", sorted(TRL_NAMES))
@pytest.mark.parametrize("conversational", [False, True])
def test_trl_parity(name, conversational, tmp_path):
    from podium.models.tiny import build_tiny_model

    policy, tok = build_tiny_model(seed=0, **TINY)
    ref, _ = build_tiny_model(tok, seed=1, **TINY)
    policy.eval()
    rows = [r for r in PAIRS if isinstance(r["prompt"], list) == conversational]
    if conversational:
        rows = rows + [{"prompt": [{"role": "user", "content": "2+2?"}],
                        "chosen": [{"role": "assistant", "content": "4"}],
                        "rejected": [{"role": "assistant", "content": "five"}]}]
    beta = 0.1
    ours = podium_metrics(policy, ref, tok, rows, name, beta)
    theirs = trl_metrics(policy, ref, tok, rows, TRL_NAMES[name], beta, tmp_path)
    # Summed fp32 log-probs carry rounding of a few 1e-6 that depends on the layout: against a float64
    # forward, TRL's padded layout and podium's two-forward prefix sharing are both off by 3.5e-6 here. A
    # reward is beta x a difference of two such sums, so it gets beta x 1e-5 of absolute room.
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-5, abs=beta * 1e-5), key
