"""GPM checkpoints in the GPM code's released layout, judged as the GPM code judges them.

A synthetic checkpoint is written in that layout by a class built like the GPM code's
`_get_reward_model` (a causal-LM subclass with `value_head` and, optionally, `prompt_head`, both
without bias, saved with `save_pretrained`), on a tiny Llama or Gemma-2 built here. The reference
below re-implements the released code's forward from its formulas (gpm_example_usage.py
`GPMPipeline.__call__` and `custom_forward`, `create_skew_symmetric_block_matrix`,
`generate_high_dim_result_with_prompt`; scripts/RMs/reward_model.py `calculate_score`;
scripts/compute_prob_from_raw.py and compute_score_from_raw.py), independently of podium's code:
left padding, explicit position ids, the last token overwritten with EOS, last-token pooling,
R blocks [[0, -l], [l, 0]], table T_ij = v_i R_i^T v_j / tau, P_ij = 1 / (1 + exp(-(T_ij - T_ji))),
GPO target sum_j (T_ij - T_ji) / K.
"""

from __future__ import annotations

import json
import string

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from torch import nn
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma2Model,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaModel,
    PreTrainedTokenizerFast,
)

from podium.data.response_batches import make_pair_collate
from podium.errors import PodiumError
from podium.judging import GPMJudge, win_probabilities
from podium.judging import build as build_module
from podium.judging.build import JudgeSpec, build_judge
from podium.models.heads import GPMModel
from podium.models.preference_folders import encode_released, load_preference_folder
from podium.models.tiny import build_tiny_model
from podium.selfplay.targets import sppo_pair
from podium.training.preference_model import gpm_objective

PROMPT = "What is 2+2?"
RESPONSES = ["4", "The answer is 4.", "five", "22, or so"]
TAU = 0.1

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
# Gemma's chat template (the BOS is written by the template and added again by the tokenizer, as
# for the GPM code's Gemma checkpoints).
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}"
            "\n{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def gemma_like_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(SPECIALS + list(string.digits + string.ascii_letters + string.punctuation + " \n"))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one token a character
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])
    fast.chat_template = TEMPLATE
    return fast


def released_class(causal_cls, body_cls, value_head_dim: int, add_prompt_head: bool):
    """The GPM code's CustomRewardModel: the causal LM with its body and the value (and prompt) head."""

    class CustomRewardModel(causal_cls):
        def __init__(self, config):
            super().__init__(config)
            setattr(self, self.base_model_prefix, body_cls(config))
            self.value_head = nn.Linear(config.hidden_size, value_head_dim, bias=False)
            if add_prompt_head:
                self.prompt_head = nn.Linear(config.hidden_size, value_head_dim // 2, bias=False)
            self.post_init()

    return CustomRewardModel


FAMILIES = {
    "llama": (LlamaForCausalLM, LlamaModel, lambda v: LlamaConfig(
        vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=2, eos_token_id=1)),
    "gemma2": (Gemma2ForCausalLM, Gemma2Model, lambda v: Gemma2Config(
        vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=128, sliding_window=8, pad_token_id=0,
        bos_token_id=2, eos_token_id=1, attn_implementation="eager")),
}


def write_released(folder, family="llama", value_head_dim=8, add_prompt_head=True, seed=0):
    """A checkpoint in the GPM code's layout; returns the class that reads it (the reference)."""
    causal, body, config = FAMILIES[family]
    tok = gemma_like_tokenizer()
    cls = released_class(causal, body, value_head_dim, add_prompt_head)
    torch.manual_seed(seed)
    model = cls(config(len(tok)))
    with torch.no_grad():  # heads as trained ones look: O(1) embeddings, not a near-zero init
        model.value_head.weight.normal_(0, 0.5)
        if add_prompt_head:
            model.prompt_head.weight.normal_(0, 0.5)
    model.config.architectures = ["CustomRewardModel"]
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return cls


@torch.no_grad()
def reference_table(cls, folder, prompt, responses, tau=TAU):
    """T_ij = s(i > j) / tau as the released code computes it, [K, K] float64."""
    model = cls.from_pretrained(str(folder)).eval()
    tok = PreTrainedTokenizerFast.from_pretrained(str(folder))
    tok.padding_side = "left"
    samples = [[{"role": "user", "content": prompt}, {"role": "assistant", "content": r}] for r in responses]
    texts = [tok.apply_chat_template(s, tokenize=False) for s in samples]
    inputs = tok(texts, padding=True, return_tensors="pt")
    inputs["input_ids"][:, -1] = tok.eos_token_id
    inputs["attention_mask"][:, -1] = 1
    mask = inputs["attention_mask"]
    position_ids = mask.long().cumsum(-1) - 1
    position_ids.masked_fill_(mask == 0, 1)
    hidden = getattr(model, model.base_model_prefix)(inputs["input_ids"], attention_mask=mask,
                                                      position_ids=position_ids)["last_hidden_state"]
    values = model.value_head(hidden)
    eos = mask.size(1) - 1 - mask.long().fliplr().argmax(dim=1)
    k = len(responses)
    v = F.normalize(values[torch.arange(k), eos], p=2, dim=-1).double()
    dim = v.shape[1]
    if hasattr(model, "prompt_head"):
        prompt_len = tok(tok.apply_chat_template([samples[0][0]], tokenize=False), return_tensors="pt")["attention_mask"].sum()
        response_len = torch.tensor([int(tok(t, return_tensors="pt")["attention_mask"].sum()) - int(prompt_len) for t in texts])
        prompt_end = hidden.size(1) - response_len - 1
        blocks = torch.softmax(model.prompt_head(hidden[torch.arange(k), prompt_end]), dim=-1).double()
    else:
        blocks = torch.ones(k, dim // 2, dtype=torch.float64)
    T = torch.zeros(k, k, dtype=torch.float64)
    for i in range(k):
        R = torch.zeros(dim, dim, dtype=torch.float64)
        for m in range(0, dim, 2):
            R[m, m + 1], R[m + 1, m] = -blocks[i, m // 2], blocks[i, m // 2]
        for j in range(k):
            if i != j:
                T[i, j] = (v[i] @ R.T) @ v[j] / tau
    return T


@pytest.fixture(scope="module", params=[("llama", 8, True), ("gemma2", 6, False)], ids=["llama-prompt-head", "gemma2"])
def released(request, tmp_path_factory):
    family, dim, prompt_head = request.param
    folder = tmp_path_factory.mktemp(family) / "GPM-tiny"
    cls = write_released(folder, family, dim, prompt_head)
    return folder, reference_table(cls, folder, PROMPT, RESPONSES)


def test_released_layout_is_what_the_gpm_code_saves(released):
    folder, _ = released
    index = json.loads((folder / "config.json").read_text())
    assert index["architectures"] == ["CustomRewardModel"] and not (folder / "preference_model.json").exists()
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "value_head.weight" in keys and any(k.startswith("model.layers.") for k in keys)


def test_judge_equals_the_released_code(released):
    """P_ij = sigma(T_ij - T_ji) and GPO's s_hat_i = sum_j (T_ij - T_ji) / K, from the reference's table."""
    folder, T = released
    judge = build_judge(JudgeSpec(kind="gpm", model=str(folder)))
    j = judge.judge(PROMPT, RESPONSES)
    L = T - T.T
    assert j.valid and j.scores is not None
    torch.testing.assert_close(j.scores.double(), L, atol=1e-5, rtol=0)
    expected = torch.sigmoid(L).fill_diagonal_(0.5)
    torch.testing.assert_close(j.matrix.double(), expected, atol=1e-5, rtol=0)
    assert L.abs().max() > 0.2  # the check is not vacuous: the responses are told apart
    pair = sppo_pair(j.matrix, j.scores, gpo=True)
    s_hat = L.sum(dim=1) / len(RESPONSES)
    # compute_prob_from_raw.py: chosen = argmax, rejected = argmin of the aggregate score.
    assert (pair["chosen_index"], pair["rejected_index"]) == (int(s_hat.argmax()), int(s_hat.argmin()))
    assert pair["chosen_score"] == pytest.approx(s_hat.max().item(), abs=1e-5)
    assert pair["rejected_score"] == pytest.approx(s_hat.min().item(), abs=1e-5)
    p = expected.sum(dim=1) / len(RESPONSES)
    assert pair["chosen_prob"] == pytest.approx(p[pair["chosen_index"]].item(), abs=1e-5)


def test_loss_probability_is_half_the_released_logit(released):
    folder, T = released
    j = build_judge(JudgeSpec(kind="gpm", model=str(folder), gpm_probability="loss")).judge(PROMPT, RESPONSES)
    torch.testing.assert_close(j.matrix.double(), torch.sigmoid(T).fill_diagonal_(0.5), atol=1e-5, rtol=0)
    j2 = build_judge(JudgeSpec(kind="gpm", model=str(folder), tau=0.5)).judge(PROMPT, RESPONSES)
    torch.testing.assert_close(j2.scores.double(), (T - T.T) * TAU / 0.5, atol=1e-5, rtol=0)


def test_encode_released_doubles_bos_and_ends_with_eos():
    tok = gemma_like_tokenizer()
    ids, n = encode_released(tok, PROMPT, "4")
    text = tok.decode(ids)
    assert text.startswith("<bos><bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>")
    assert ids[-1] == tok.eos_token_id  # the template's final "\n" is overwritten, as the GPM code does
    # The gate reads the last token of the prompt rendered alone (no generation prompt): its "\n".
    assert tok.decode(ids[:n]) == "<bos><bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"


def test_recipe_hub_id_loads_the_released_layout(released, monkeypatch):
    """recipes/sppo-gpm-llama-3-8b.yaml names general-preference/GPM-Gemma-2B: a Hub id is fetched (configs,
    safetensors and tokenizer files only) and read in the GPM code's layout."""
    folder, T = released
    asked = {}

    def fake_snapshot_download(repo_id, allow_patterns=None, **kw):
        asked.update(repo_id=repo_id, allow_patterns=allow_patterns)
        return str(folder)

    monkeypatch.setattr(build_module, "snapshot_download", fake_snapshot_download)
    judge = build_judge(JudgeSpec(kind="gpm", model="general-preference/GPM-Gemma-2B"))
    assert asked["repo_id"] == "general-preference/GPM-Gemma-2B"
    assert not any(p.endswith((".bin", ".py", ".pt")) for p in asked["allow_patterns"])
    P = judge.judge(PROMPT, RESPONSES).matrix
    torch.testing.assert_close(P.double(), torch.sigmoid(T - T.T).fill_diagonal_(0.5), atol=1e-5, rtol=0)


# Bad checkpoints: a clear PodiumError naming the folder and the missing field or tensor.


def rewrite_tensors(folder, change):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("case,match", [
    ("no_value_head", "not a preference-model folder: no preference_model.json .* no tensor 'value_head.weight'"),
    ("odd", "value_head.weight' has value_head_dim 7"),
    ("bt", r"value_head.weight' is \[1, 32\], a Bradley–Terry reward model"),
    ("wrong_hidden", r"value_head.weight' has shape \[8, 31\]"),
    ("prompt_head", r"prompt_head.weight' has shape \[3, 32\]; with value_head_dim 8 the prompt head is \[4, 32\]"),
    ("backbone", "backbone's weights are incomplete .*layers.1.mlp.down_proj.weight"),
])
def test_bad_released_checkpoints_name_folder_and_tensor(tmp_path, case, match):
    folder = tmp_path / "bad"
    write_released(folder)
    changes = {
        "no_value_head": lambda t: t.pop("value_head.weight"),
        "odd": lambda t: t.update({"value_head.weight": torch.zeros(7, 32)}),
        "bt": lambda t: t.update({"value_head.weight": torch.zeros(1, 32)}),
        "wrong_hidden": lambda t: t.update({"value_head.weight": torch.zeros(8, 31)}),
        "prompt_head": lambda t: t.update({"prompt_head.weight": torch.zeros(3, 32)}),
        "backbone": lambda t: t.pop("model.layers.1.mlp.down_proj.weight"),
    }
    rewrite_tensors(folder, changes[case])
    with pytest.raises(PodiumError, match=match) as e:
        load_preference_folder(folder)
    assert str(folder) in str(e.value)


def test_released_checkpoint_without_chat_template(tmp_path):
    folder = tmp_path / "bad"
    write_released(folder)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    for f in folder.glob("chat_template.*"):
        f.unlink()
    with pytest.raises(PodiumError, match="no chat template"):
        load_preference_folder(folder)


# podium's own GPM: train -> save -> load -> judge keeps the convention.


def test_podium_gpm_round_trip_train_save_load_judge(tmp_path):
    """A podium-trained GPM, saved and loaded by the judge: the 'loss' probability is sigma of the logit the GPM loss
    trained (pair_logits = s/tau), the default 'released' one sigma of twice it, and GPO's targets are the row means."""
    model, tok = build_tiny_model(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, seed=0)
    torch.manual_seed(0)
    gpm = GPMModel(model, k=2, tau=TAU, gates="softmax")
    pairs = [{"prompt": PROMPT, "chosen": RESPONSES[0], "rejected": r} for r in RESPONSES[1:]]
    batch = make_pair_collate(tok)(pairs)
    opt = torch.optim.SGD(gpm.parameters(), lr=0.05)
    for _ in range(3):
        loss, _ = gpm_objective(gpm, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    gpm.eval()
    with torch.no_grad():
        trained = gpm.pair_logits(batch).double()  # s(0 > j) / tau for j = 1..3
    gpm.save(tmp_path / "gpm", tok)

    folder = load_preference_folder(tmp_path / "gpm")
    assert folder.layout == "podium" and folder.model.tau == TAU
    loss_j = build_judge(JudgeSpec(kind="gpm", model=str(tmp_path / "gpm"), gpm_probability="loss")).judge(PROMPT, RESPONSES)
    released_j = build_judge(JudgeSpec(kind="gpm", model=str(tmp_path / "gpm"))).judge(PROMPT, RESPONSES)
    torch.testing.assert_close(loss_j.matrix[0, 1:].double(), torch.sigmoid(trained), atol=1e-5, rtol=0)
    torch.testing.assert_close(released_j.matrix[0, 1:].double(), torch.sigmoid(2 * trained), atol=1e-5, rtol=0)
    torch.testing.assert_close(released_j.scores.double(), 2 * loss_j.scores.double(), atol=1e-5, rtol=0)
    p = win_probabilities(released_j.matrix)
    assert ((p > 0) & (p < 1)).all()


def test_gpm_judge_rejects_unknown_probability():
    model, tok = build_tiny_model(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, seed=0)
    with pytest.raises(ValueError, match="probability"):
        GPMJudge(GPMModel(model, k=2), tok, probability="both")


def podium_gpm_folder(tmp_path, **kw):
    model, tok = build_tiny_model(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, seed=0)
    GPMModel(model, **kw).save(tmp_path / "gpm", tok)
    return tmp_path / "gpm"


def test_podium_layout_head_not_matching_its_config_names_tensor_and_field(tmp_path):
    folder = podium_gpm_folder(tmp_path, k=2)
    cfg = json.loads((folder / "preference_model.json").read_text())
    (folder / "preference_model.json").write_text(json.dumps({**cfg, "k": 3}))
    with pytest.raises(PodiumError, match=r"tensor 'embed.weight' has shape \[4, 16\], but preference_model.json "
                                          r"\(k=3, .*\) needs \[6, 16\]"):
        load_preference_folder(folder)
    (folder / "preference_model.json").write_text(json.dumps({**cfg, "gates": "softmax"}))
    with pytest.raises(PodiumError, match=r"head tensors do not match preference_model.json .*missing \['gate.bias', "
                                          r"'gate.weight'\]"):
        load_preference_folder(folder)
    (folder / "preference_model.json").write_text("[]")
    with pytest.raises(PodiumError, match="expected a JSON object with field 'kind'"):
        load_preference_folder(folder)


def test_podium_layout_with_incomplete_backbone(tmp_path):
    folder = podium_gpm_folder(tmp_path, k=2)
    rewrite_tensors(folder, lambda t: t.pop(next(k for k in t if "mlp.up_proj" in k)))
    with pytest.raises(PodiumError, match="backbone's weights are incomplete .*mlp.up_proj"):
        load_preference_folder(folder)


def test_judge_kind_must_match_the_folder(tmp_path):
    folder = podium_gpm_folder(tmp_path, k=2)
    with pytest.raises(PodiumError, match="judge kind 'reward', but .* holds a 'gpm' model"):
        build_judge(JudgeSpec(kind="reward", model=str(folder)))
