"""Preference losses as pure functions behind one table: objective name -> `LossSpec` (podium.losses.specs).

Every loss returns a :class:`LossOutput` (per-example ``losses`` [B] and detached
``chosen_rewards`` / ``rejected_rewards`` [B]); the trainer sums the losses. ``LOSS_SPECS`` says
what each objective needs and accepts, so a trainer can build the keyword arguments from a batch
and check a dataset before training::

    spec = LOSS_SPECS[objective]
    check_records(objective, records, source="pairs.jsonl")
    out = spec.fn(**{k: batch[k] for k in spec.inputs}, beta=..., ...)

One file per family: dpo.py (DPO/sigmoid, cDPO, sigmoid_norm, IPO, hinge, RPO, DPOP), exo.py, nca.py,
robust.py, bco.py, aot.py, apo.py, discopop.py, sft.py, sppo.py, gpo.py, kto.py (KTO, unpaired APO),
cpo.py (CPO, SimPO, AlphaPO), orpo.py, reward.py, gpm.py; around them divergence.py (f-DPO scores),
length.py (LD-DPO log-probs), wpo.py (WPO weights) and combined.py (weighted sums, MPO).
"""

from __future__ import annotations

from podium.losses.aot import aot_loss, aot_unpaired_loss
from podium.losses.apo import apo_down_loss, apo_zero_loss
from podium.losses.bco import bco_pair_loss
from podium.losses.checks import check_records, combination_problem, combined_settings, objective_names
from podium.losses.combined import weighted_sum
from podium.losses.cpo import cpo_hinge_loss, cpo_ipo_loss, cpo_loss, simpo_loss
from podium.losses.discopop import discopop_loss
from podium.losses.divergence import F_DIVERGENCES, f_divergence_score
from podium.losses.dpo import dpo_loss, dpop_loss, hinge_loss, ipo_loss, rpo_loss, sigmoid_norm_loss
from podium.losses.exo import exo_pair_loss
from podium.losses.gpm import gpm_loss, gpm_preference_matrix, gpm_score, gpm_score_matrix
from podium.losses.gpo import gpo_loss
from podium.losses.kto import apo_zero_unpaired_loss, kto_kl_estimate, kto_loss
from podium.losses.length import length_desensitized_logps, length_desensitized_reference
from podium.losses.nca import nca_pair_loss
from podium.losses.objectives_doc import objectives_markdown
from podium.losses.orpo import orpo_loss
from podium.losses.output import LossOutput
from podium.losses.reward import bradley_terry_loss
from podium.losses.robust import robust_loss
from podium.losses.settings import SETTINGS, TRAINING_DEFAULTS, Setting
from podium.losses.sft import sft_loss
from podium.losses.specs import LOSS_SPECS, LOSSES, POLICY_LOGPS, SELF_PLAY_OBJECTIVES, LossSpec, get_loss
from podium.losses.sppo import sppo_hard_loss, sppo_loss, sppo_single_loss
from podium.losses.wpo import wpo_weights

__all__ = [
    "F_DIVERGENCES",
    "LOSSES",
    "LOSS_SPECS",
    "POLICY_LOGPS",
    "SELF_PLAY_OBJECTIVES",
    "SETTINGS",
    "TRAINING_DEFAULTS",
    "LossOutput",
    "LossSpec",
    "Setting",
    "aot_loss",
    "aot_unpaired_loss",
    "apo_down_loss",
    "apo_zero_loss",
    "apo_zero_unpaired_loss",
    "bco_pair_loss",
    "bradley_terry_loss",
    "check_records",
    "combination_problem",
    "combined_settings",
    "cpo_hinge_loss",
    "cpo_ipo_loss",
    "cpo_loss",
    "discopop_loss",
    "dpo_loss",
    "dpop_loss",
    "exo_pair_loss",
    "f_divergence_score",
    "get_loss",
    "gpm_loss",
    "gpm_preference_matrix",
    "gpm_score",
    "gpm_score_matrix",
    "gpo_loss",
    "hinge_loss",
    "ipo_loss",
    "kto_kl_estimate",
    "kto_loss",
    "length_desensitized_logps",
    "length_desensitized_reference",
    "nca_pair_loss",
    "objective_names",
    "objectives_markdown",
    "orpo_loss",
    "robust_loss",
    "rpo_loss",
    "sft_loss",
    "sigmoid_norm_loss",
    "simpo_loss",
    "sppo_hard_loss",
    "sppo_loss",
    "sppo_single_loss",
    "weighted_sum",
    "wpo_weights",
]
