"""The seed cards' five architecture families, exactly: Llama-3, Qwen2, Mistral, Mixtral, Gemma-2.

On tiny random models of each family (tests/parity/families.py: sequences longer than the sliding
window, Gemma-2's alternating local/global layers and soft-capping, Mixtral's router), with podium's
speed features at their defaults:
- the first-step loss, log-probs and rewards of dpo, ipo, hinge and sppo_hard equal TRL 1.16
  DPOTrainer's (Mixtral: its router load-balancing loss included, and equal to TRL's `aux_loss`),
  through the helper path and through the `train` stage on saved folders;
- every pair layout (plain, prefix-shared, padding-free, both) equals a plain per-sequence forward;
- the SFT loss, padded and packed, equals a plain transformers forward with the prompt's labels masked;
- podium's sampler decodes greedily what `model.generate` decodes, token for token, records the
  model's own log-probs, and samples reproducibly by seed.
A further test shows each family feature changes the numbers these tests compare, so none of them
could pass by ignoring it. `python -m tests.parity.families` prints the parity table.
"""

from __future__ import annotations

import json

import pytest
import torch
from tests.parity.families import (
    BETA,
    FAMILIES,
    MAX_LENGTH,
    OBJECTIVES,
    PAIRS,
    VARIANTS,
    WINDOW,
    as_conversation,
    build_family,
    podium_first_step,
    trl_first_step,
)

from podium.data.chat import IGNORE, tokenize_sft
from podium.data.collate import pack_batch, pad_batch
from podium.data.preference import tokenize_pairs
from podium.generation.hf_sampler import TransformersSampler
from podium.generation.sampler import SamplingParams
from podium.training import attention_masks
from podium.training.logps import pair_logps
from podium.training.pair_layout import pack_pairs
from podium.training.router_loss import router_aux_coef
from podium.training.sft import sft_objective

pytest.importorskip("trl")
pytestmark = pytest.mark.parity

LAYOUTS = [(False, False), (True, False), (False, True), (True, True)]  # (prefix_sharing, padding_free)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: a second intra-op thread only adds contention on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def families():
    """family -> (policy, reference, tokenizer), built once per module."""
    out = {}
    for family in FAMILIES + VARIANTS:
        policy, tok = build_family(family, seed=0)
        ref, _ = build_family(family, seed=1, tokenizer=tok)
        out[family] = (policy, ref, tok)
    return out


def assert_close_to_trl(ours: dict, theirs: dict):
    for key, value in theirs.items():
        # Rewards are beta x a difference of two ~50-nat sums: compare them absolutely.
        tol = {"abs": 1e-5} if key.startswith("rewards/") else {"rel": 1e-5}
        assert ours[key] == pytest.approx(value, **tol), key


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("family", FAMILIES)
def test_first_step_equals_trl(families, family, objective, tmp_path):
    policy, ref, tok = families[family]
    ours = podium_first_step(policy, ref, tok, PAIRS, objective)
    theirs = trl_first_step(policy, ref, tok, PAIRS, OBJECTIVES[objective], BETA, tmp_path)
    assert ours.pop("layout") == (True, False)  # prefix sharing stays on for every seed family
    assert ("aux_loss" in theirs) == (family == "mixtral")
    assert_close_to_trl(ours, theirs)


@pytest.mark.parametrize("family", VARIANTS)
def test_variant_first_step_equals_trl(families, family, tmp_path):
    policy, ref, tok = families[family]
    assert set(policy.config.layer_types) == {"full_attention", "sliding_attention"}
    ours = podium_first_step(policy, ref, tok, PAIRS, "dpo")
    assert ours.pop("layout") == (True, False)
    assert_close_to_trl(ours, trl_first_step(policy, ref, tok, PAIRS, "sigmoid", BETA, tmp_path))


@pytest.mark.parametrize("family", FAMILIES)
def test_train_stage_first_step_equals_trl(families, family, tmp_path):
    """`podium train` from saved folders, given nothing but model, reference and data. The stage renders string
    pairs with the tokenizer's chat template (podium.data.rendering), as TRL renders the same pairs given as
    conversations."""
    from podium.models.io import save_model
    from podium.stages import run_stage

    policy, ref, tok = families[family]
    save_model(policy, tok, tmp_path / "policy")
    save_model(ref, tok, tmp_path / "ref")
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
    run_stage("train", {"model": str(tmp_path / "policy"), "reference": str(tmp_path / "ref"),
                        "data": str(tmp_path / "pairs.jsonl"), "batch_size": len(PAIRS), "max_steps": 1,
                        "reference_cache_dir": str(tmp_path / "cache")}, tmp_path / "out")
    (row,) = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert tok.chat_template
    theirs = trl_first_step(policy, ref, tok, [as_conversation(r) for r in PAIRS], "sigmoid", BETA, tmp_path / "trl")
    assert_close_to_trl(row, theirs)


def naive_logps(model, ex) -> list[float]:
    """log p(completion | prompt) from a forward of the single unpadded sequence, for each side."""
    out = []
    for side in ("chosen_ids", "rejected_ids"):
        ids = torch.tensor([ex["prompt_ids"] + ex[side]])
        logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
        picked = logp.gather(-1, ids[0, 1:, None])[:, 0]
        out.append(picked[len(ex["prompt_ids"]) - 1:].sum().item())
    return out


@pytest.mark.parametrize("family", FAMILIES + VARIANTS)
def test_every_layout_equals_a_plain_forward(families, family):
    policy, _, tok = families[family]
    examples, _ = tokenize_pairs(PAIRS[:6], tok, MAX_LENGTH)
    assert all(len(ex["prompt_ids"]) > WINDOW for ex in examples)
    with torch.no_grad():
        expected = torch.tensor([naive_logps(policy, ex) for ex in examples]).T.reshape(-1)  # chosen, then rejected
        router = router_aux_coef(policy) > 0
        aux = []
        for ps, pf in LAYOUTS:
            out = pair_logps(policy, pack_pairs(examples, tok.pad_token_id, prefix_sharing=ps, padding_free=pf),
                             router_loss=router)
            torch.testing.assert_close(out.logps, expected, rtol=1e-5, atol=1e-4)
            aux.append(out.aux_loss)
    if router:  # the weighted router loss does not depend on the layout
        for a in aux[1:]:
            torch.testing.assert_close(a, aux[0], rtol=1e-5, atol=1e-7)


def _shared_logps(model, tok, examples, padding_free=False):
    with torch.no_grad():
        return pair_logps(model, pack_pairs(examples, tok.pad_token_id, prefix_sharing=True,
                                            padding_free=padding_free)).logps


FEATURES = [("mistral", "sliding_window"), ("gemma2", "sliding_window"), ("qwen2_swa", "sliding_window"),
            ("gemma2", "attn_softcap"),
            ("gemma2", "final_softcap"), ("mixtral", "router_loss")]


@pytest.mark.parametrize("family,feature", FEATURES)
def test_each_family_feature_changes_the_numbers(families, family, feature, monkeypatch):
    """The test models exercise each feature: ignoring it moves a log-prob or the loss well past 1e-5."""
    policy, ref, tok = families[family]
    examples, _ = tokenize_pairs(PAIRS[:6], tok, MAX_LENGTH)
    # The sliding window is podium's to apply in the prepared masks of the packed layout; the two-forward
    # prefix sharing leaves every mask to transformers (its exactness: test_every_layout_equals_a_plain_forward).
    packed = feature == "sliding_window"
    exact = _shared_logps(policy, tok, examples, packed)
    if feature == "router_loss":
        with_aux = podium_first_step(policy, ref, tok, PAIRS, "dpo")
        assert router_aux_coef(policy) * with_aux["aux_loss"] > 1e-3 * with_aux["loss"]
        return
    if feature == "sliding_window":
        monkeypatch.setattr(attention_masks, "window_mask", lambda pos, w: torch.ones_like(pos[:, :, None] == pos[:, None]))
    elif feature == "attn_softcap":
        for layer in policy.model.layers:
            monkeypatch.setattr(layer.self_attn, "attn_logit_softcapping", None)
    else:
        monkeypatch.setattr(policy.config, "final_logit_softcapping", None)
    assert (_shared_logps(policy, tok, examples, packed) - exact).abs().max() > 1e-3


SFT_ROWS = [
    {"prompt": [{"role": "user", "content": f"Add {a} and {b}, please."}],
     "completion": [{"role": "assistant", "content": f"{a} + {b} = {a + b}"}]}
    for a, b in [(2, 3), (17, 25), (8, 9), (40, 1)]
]


@pytest.mark.parametrize("packing", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_sft_loss_equals_plain_forward(families, family, packing):
    """podium's SFT loss = transformers' own loss on the padded batch with prompt labels at -100
    (Mixtral: with its router loss, `output_router_logits=True`, as TRL's SFTTrainer turns it on)."""
    policy, _, tok = families[family]
    examples = [tokenize_sft(r, tok) for r in SFT_ROWS]
    assert all(len(e["input_ids"]) > WINDOW for e in examples)
    padded = pad_batch(examples, tok.pad_token_id)
    coef = router_aux_coef(policy)
    with torch.no_grad():
        labels = padded["labels"].masked_fill(padded["attention_mask"] == 0, IGNORE)
        extra = {"output_router_logits": True} if coef else {}
        expected = policy(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"], labels=labels,
                          **extra).loss
        batch = pack_batch(examples, tok.pad_token_id) if packing else padded
        loss_sum, metrics = sft_objective(policy, batch, router_aux_loss_coef=coef)
    assert (loss_sum / batch["count"]).item() == pytest.approx(expected.item(), rel=1e-5)
    assert ("aux_loss" in metrics) == (family == "mixtral")


PROMPTS = [p["prompt"] for p in PAIRS[:5]] + ["Hi", "A much longer prompt, well past the sliding window of eight"]


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_decoding_equals_generate(families, family):
    """Batched, left-padded decoding with podium's preallocated cache = `model.generate` on each
    prompt alone; 24 new tokens run past the sliding window."""
    policy, _, tok = families[family]
    new = 24
    got = TransformersSampler(policy, tok, batch_size=3).generate(PROMPTS, 1, SamplingParams(temperature=0,
                                                                                               max_new_tokens=new))
    for prompt, (completion,) in zip(PROMPTS, got):
        ids = tok(prompt, return_tensors="pt")
        with torch.no_grad():
            ref = policy.generate(**ids, max_new_tokens=new, do_sample=False, pad_token_id=tok.pad_token_id,
                                  eos_token_id=tok.eos_token_id)
        assert completion.token_ids == ref[0, ids["input_ids"].shape[1]:].tolist(), prompt
        # The recorded log-prob is the model's own (soft-capped) distribution over the same tokens.
        full = torch.cat([ids["input_ids"][0], torch.tensor(completion.token_ids)])[None]
        with torch.no_grad():
            logp = policy(input_ids=full).logits[0, :-1].float().log_softmax(-1)
        tail = logp.gather(-1, full[0, 1:, None])[:, 0][-len(completion.token_ids):]
        assert completion.logp_sum == pytest.approx(tail.sum().item(), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_sampling_is_reproducible_by_seed(families, family):
    policy, _, tok = families[family]
    params = SamplingParams(temperature=1.0, max_new_tokens=16)

    def ids(batch_size, seed):
        out = TransformersSampler(policy, tok, batch_size=batch_size).generate(PROMPTS, 2, params, seed=seed)
        return [c.token_ids for comps in out for c in comps]

    first = ids(4, seed=3)
    assert ids(2, seed=3) == first  # same seed, other batching: same samples
    assert ids(4, seed=4) != first
