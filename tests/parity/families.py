"""Tiny random models of the seed cards' five architecture families, built offline.

Each is the family's own transformers config class at 2 layers and hidden size 64, with the
features that set the family apart switched on at sizes these tests reach: grouped-query
attention and tied embeddings (Llama-3), qkv bias (Qwen2), a sliding window shorter than the
test sequences (Mistral/SOLAR, Gemma-2), experts and a router (Mixtral), and Gemma-2's
alternating local/global layers with attention and final-logit soft-capping. Soft-capping
thresholds are set low and the initialisation wide enough that tanh is far from linear, so
a path that skipped it would not pass by accident (the tests check that each feature changes
the numbers they compare).
"""

from __future__ import annotations

import torch
import transformers

from podium.models.tiny import build_tokenizer

WINDOW = 8  # sliding window, in tokens; the test prompts are longer
FAMILIES = ("llama3", "qwen2", "mistral", "mixtral", "gemma2")
VARIANTS = ("qwen2_swa",)  # further configurations of a family, checked for exactness too

# 16 string pairs; every prompt is longer than WINDOW characters (the tokenizer is per character).
PAIRS = [
    {"prompt": f"Question {i}: what is {a} plus {b}?", "chosen": f" {a + b}.", "rejected": f" about {a * b + 7}"}
    for i, (a, b) in enumerate([(2, 3), (11, 4), (7, 8), (25, 17), (3, 3), (40, 2), (9, 13), (6, 61),
                                (5, 5), (12, 12), (30, 1), (8, 19), (44, 4), (1, 99), (15, 6), (20, 22)])
]


def family_config(family: str, tokenizer) -> transformers.PretrainedConfig:
    """The family's transformers config at test size (2 layers, hidden 64)."""
    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    if family == "llama3":
        # A wide init: at 0.02 a tied-embedding model this small only repeats its input when decoding.
        return transformers.LlamaConfig(**common, tie_word_embeddings=True, initializer_range=0.2,
                                        rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    if family == "qwen2":
        return transformers.Qwen2Config(**common, tie_word_embeddings=False)
    if family == "qwen2_swa":  # Qwen2's optional mixed layers: layer 0 global, layer 1 sliding
        return transformers.Qwen2Config(**common, tie_word_embeddings=False, use_sliding_window=True,
                                        sliding_window=WINDOW, max_window_layers=1)
    if family == "mistral":
        return transformers.MistralConfig(**common, sliding_window=WINDOW)
    if family == "mixtral":
        return transformers.MixtralConfig(**common, num_local_experts=4, num_experts_per_tok=2,
                                          router_aux_loss_coef=0.02)
    if family == "gemma2":
        # Untied embeddings: tied ones at this size make greedy decoding repeat its input token, which
        # would leave the generation test nothing to compare.
        return transformers.Gemma2Config(**common, head_dim=16, query_pre_attn_scalar=16, sliding_window=WINDOW,
                                         attn_logit_softcapping=2.0, final_logit_softcapping=3.0,
                                         initializer_range=0.2, tie_word_embeddings=False)
    raise KeyError(family)


def build_family(family: str, seed: int = 0, tokenizer=None):
    """`(model, tokenizer)`: a random `family` model in eval mode and podium's char tokenizer."""
    tokenizer = tokenizer or build_tokenizer()
    config = family_config(family, tokenizer)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = transformers.AutoModelForCausalLM.from_config(config)
    finally:
        torch.random.set_rng_state(state)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.eval(), tokenizer


# --- first DPO-family step, podium vs TRL 1.16 ---------------------------------------------------

OBJECTIVES = {"dpo": "sigmoid", "ipo": "ipo", "hinge": "hinge", "sppo_hard": "sppo_hard"}  # podium -> TRL
METRICS = ("loss", "logps/chosen", "logps/rejected", "rewards/chosen", "rewards/rejected", "aux_loss")
MAX_LENGTH = 64
BETA = 0.1


def podium_first_step(policy, ref, tokenizer, rows, objective: str, beta: float = BETA, log=None) -> dict:
    """Batch means of podium's first-step metrics, laid out as the train stage lays them out by default
    (prefix sharing, less whatever `exact_layout` turns off for the model), reference pass included."""
    from podium.data.preference import tokenize_pairs
    from podium.training.attention_masks import exact_layout
    from podium.training.preference_objective import PreferenceObjective, make_collate
    from podium.training.reference import compute_reference_logps
    from podium.training.router_loss import router_aux_coef

    examples, stats = tokenize_pairs(rows, tokenizer, MAX_LENGTH)
    assert stats.kept == len(rows)
    pad = tokenizer.pad_token_id
    ps, pf = exact_layout(policy, True, False, log)
    ref_ps, ref_pf = exact_layout(ref, True, False, log)
    ref_logps = compute_reference_logps(ref, examples, pad, batch_size=len(examples), prefix_sharing=ref_ps,
                                        padding_free=ref_pf)
    batch = make_collate(pad, ref_logps, prefix_sharing=ps, padding_free=pf)(examples)
    step = PreferenceObjective(objective, beta=beta, router_aux_loss_coef=router_aux_coef(policy))
    with torch.no_grad():
        loss_sum, metrics = step(policy, batch)
    out = {"loss": loss_sum.item() / len(rows), "layout": (ps, pf)}
    out.update({k: metrics[k].mean().item() for k in METRICS[1:] if k in metrics})
    return out


def trl_first_step(policy, ref, tokenizer, rows, loss_type: str, beta: float, out_dir) -> dict:
    """The same metrics from TRL 1.16's DPOTrainer on one batch of all `rows` (on copies of the
    models: TRL patches their forward and config)."""
    import copy

    import datasets
    from trl import DPOConfig, DPOTrainer

    policy, ref = copy.deepcopy(policy), copy.deepcopy(ref)

    datasets.disable_progress_bars()
    args = DPOConfig(output_dir=str(out_dir), loss_type=[loss_type], beta=beta, per_device_train_batch_size=len(rows),
                     report_to=[], use_cpu=True, max_length=MAX_LENGTH,
                     bf16=False)  # TRL 1.16 defaults to bf16 autocast, also on CPU
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    logged = trainer._metrics["train" if trainer.model.training else "eval"]
    return {"loss": loss.item(), **{k: logged[k][-1] for k in METRICS[1:] if k in logged}}


def parity_table(families=FAMILIES, objectives=tuple(OBJECTIVES)) -> list[dict]:
    """One row per (family, objective, metric): podium, TRL, relative error."""
    import tempfile
    from pathlib import Path

    rows = []
    for family in families:
        policy, tok = build_family(family, seed=0)
        ref, _ = build_family(family, seed=1, tokenizer=tok)
        for objective in objectives:
            ours = podium_first_step(policy, ref, tok, PAIRS, objective)
            with tempfile.TemporaryDirectory() as d:
                theirs = trl_first_step(policy, ref, tok, PAIRS, OBJECTIVES[objective], BETA, Path(d))
            for metric in METRICS:
                if metric in theirs:
                    a, b = ours.get(metric, float("nan")), theirs[metric]
                    rows.append({"family": family, "objective": objective, "metric": metric, "podium": a, "trl": b,
                                 "rel_err": abs(a - b) / max(abs(b), 1e-12)})
    return rows


def as_conversation(row: dict) -> dict:
    """A standard-format record as TRL's conversational format: the prompt a user turn, each completion
    (`chosen`, `rejected`, `completion`) an assistant turn; other fields (KTO's `label`) stay."""
    out = dict(row)
    for key in ("prompt", "chosen", "rejected", "completion"):
        if isinstance(row.get(key), str):
            out[key] = [{"role": "user" if key == "prompt" else "assistant", "content": row[key]}]
    return out


if __name__ == "__main__":  # python -m tests.parity.families: the parity table, markdown
    import warnings

    warnings.filterwarnings("ignore")
    table = {}
    for r in parity_table(FAMILIES + VARIANTS):
        table.setdefault((r["family"], r["objective"]), {})[r["metric"]] = r
    cols = ("loss", "logps/chosen", "logps/rejected", "aux_loss")
    print("| family | objective | " + " | ".join(f"{c}: podium / TRL (rel. err)" for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for (family, objective), m in table.items():
        cells = [f"{m[c]['podium']:.6f} / {m[c]['trl']:.6f} ({m[c]['rel_err']:.1e})" if c in m else "-" for c in cols]
        print(f"| {family} | {objective} | " + " | ".join(cells) + " |")
