"""The native PairRM judge without the oracle: reading both layouts, what a bad folder says, dtypes, batching.

Exact agreement with llm-blender itself is tests/parity/test_pairrm_llm_blender.py; here the checkpoints are the
same tiny random-init ones (tests/pairrm_fixtures.py).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from tests.pairrm_fixtures import WORDS, build_tiny_pairrm

from podium.errors import PodiumError
from podium.judging.pairrm import PairRMJudge
from podium.models.pairrm import load_pairrm
from podium.models.spm_proto import read_spm_model

PROMPTS = [("What is 2+2?", ["4", "The answer is 4.", "five", "4"]), ("hi", ["hello", " hey there "]),
           (" ".join(WORDS[:50]), ["short", " ".join(WORDS[10:60]), "mid length answer here"])]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_pairrm(tmp_path_factory.mktemp("pairrm"))


@pytest.fixture(scope="module")
def judge(tiny):
    return PairRMJudge(load_pairrm(tiny["llm-blender"], device="cpu"))


def test_spm_reader_equals_sentencepiece(tiny):
    spm = pytest.importorskip("sentencepiece")
    proc = spm.SentencePieceProcessor(model_file=str(tiny["backbone"] / "spm.model"))
    model = read_spm_model(tiny["backbone"] / "spm.model")
    assert len(model.pieces) == proc.get_piece_size()
    for i, (piece, score, kind) in enumerate(model.pieces):
        assert piece == proc.id_to_piece(i) and score == pytest.approx(proc.get_score(i), abs=0)
        assert (kind == 3) == proc.is_control(i) and (kind == 2) == proc.is_unknown(i) and (kind == 6) == proc.is_byte(i)
    assert model.unk_id == proc.unk_id() == 3 and model.byte_fallback and model.precompiled_charsmap


def test_not_a_spm_file(tmp_path):
    (tmp_path / "spm.model").write_bytes(b"\xff\xff\xff")
    with pytest.raises(PodiumError, match="spm.model: not a SentencePiece model"):
        read_spm_model(tmp_path / "spm.model")


def test_both_layouts_load_the_same_model(tiny, judge):
    hf = PairRMJudge(load_pairrm(tiny["hf"], device="cpu"))
    for a, b in zip(judge.logit_matrices(PROMPTS), hf.logit_matrices(PROMPTS)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert judge.pairrm.settings.layout == "llm-blender" and hf.pairrm.settings.layout == "hf"
    assert (judge.pairrm.settings.source_max_length, judge.pairrm.settings.candidate_max_length) == (1224, 412)


def test_float32_whatever_the_configs_dtype(tiny, judge):
    """The backbone config names float16 (transformers 5 would build the model in it); PairRM runs fp32 on CPU."""
    assert json.loads((tiny["backbone"] / "config.json").read_text())["dtype"] == "float16"
    assert {p.dtype for p in judge.pairrm.model.parameters()} == {torch.float32}


def test_the_backbones_weights_are_never_read(tiny, judge, tmp_path):
    """llm-blender's layout names a backbone for its config and tokenizer; every weight is in the checkpoint."""
    backbone = tmp_path / "backbone"
    shutil.copytree(tiny["backbone"], backbone)
    (backbone / "model.safetensors").unlink()
    folder = tmp_path / "PairRM"
    shutil.copytree(tiny["llm-blender"], folder)
    config = json.loads((folder / "config.json").read_text()) | {"model_name": str(backbone)}
    (folder / "config.json").write_text(json.dumps(config))
    other = PairRMJudge(load_pairrm(folder, device="cpu"))
    torch.testing.assert_close(other.logit_matrices(PROMPTS[:1])[0], judge.logit_matrices(PROMPTS[:1])[0])


def test_batching_and_shared_passes_change_no_logit(judge):
    """All prompts at once, one pair per pass, and each prompt alone give the same C (up to float rounding); a repeated
    response's C_ij is the pass of the text against itself."""
    together = judge.logit_matrices(PROMPTS)
    one_by_one = PairRMJudge(judge.pairrm, batch_size=1)
    for (prompt, responses), C in zip(PROMPTS, together):
        torch.testing.assert_close(one_by_one.logit_matrices([(prompt, responses)])[0], C, atol=1e-5, rtol=0)
    enc = judge.encoder
    source, cands = enc.segments(*PROMPTS[0][:1], ["4"])
    seq, markers = enc.pair(source, cands[0], cands[0])
    assert together[0][0, 3].item() == pytest.approx(judge.logits([(seq, markers)])[0].item(), abs=1e-5)
    assert together[0][0, 3] == together[0][3, 0] and together[0][0, 0] == 0


def test_sequence_layout_and_cuts(judge):
    """[CLS] <|source|> x [SEP] [CLS] <|candidate1|> a [SEP] [CLS] <|candidate2|> b [SEP]; the source cut at 1224 tokens,
    each candidate at 412 + (1224 - len(source)) // 2 = (2048 - len(source)) // 2; "[SEP]" in a text is a space."""
    enc, ids = judge.encoder, judge.pairrm.marker_ids
    cls, sep = judge.pairrm.special_ids["cls"], judge.pairrm.special_ids["sep"]
    source, cands = enc.segments("q [SEP] q", ["a [SEP]", "b"])
    seq, markers = enc.pair(source, cands[0], cands[1])
    assert seq.count(sep) == 3 and seq.count(cls) == 3
    assert [seq[m] for m in markers] == [ids["source"], ids["cand1"], ids["cand2"]]
    assert [seq[m - 1] for m in markers] == [cls] * 3
    assert enc.segments("q [SEP] q", [])[0] == enc.segments("q   q", [])[0]  # the space, then " {2,}" -> " "
    long_text = " ".join(WORDS * 20)
    source, cands = enc.segments(long_text, [long_text])
    assert len(source) == 1224 and len(cands[0]) == 412
    short, cands = enc.segments("q", [long_text])
    assert len(cands[0]) == (2048 - len(short)) // 2 and short[-1] == sep and cands[0][-1] == sep


def test_empty_response_marks_the_prompt_invalid(judge):
    j = judge.preference_matrix("q", ["a", " ", "b"])
    assert not j.valid and j.invalid == [1] and j.reason == "empty response"
    assert judge.judge_many([("q", ["a", ""]), ("q", ["a", "b"])])[1].valid


def _copy(tiny, tmp_path, layout="llm-blender"):
    folder = tmp_path / "copy"
    shutil.copytree(tiny[layout], folder)
    return folder


@pytest.mark.parametrize("change,match", [
    (lambda f: (f / "config.json").unlink() or (f / "ranker_config.json").unlink(), "not a PairRM checkpoint: no config.json"),
    (lambda f: (f / "config.json").write_text("{oops"), r"config.json: invalid JSON"),
    (lambda f: (f / "config.json").write_text(json.dumps({"ranker_type": "summareranker"})), "ranker_type 'summareranker'"),
    (lambda f: (f / "config.json").write_text(json.dumps({"ranker_type": "pairranker", "model_type": "deberta"})),
     "missing field 'model_name'"),
    (lambda f: (f / "config.json").write_text(json.dumps({"ranker_type": "pairranker", "model_type": "roberta",
                                                          "model_name": "x"})), "model_type 'roberta'"),
    (lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin"), "only pytorch_model.bin, a pickle"),
])
def test_unreadable_llm_blender_folders_name_file_and_field(tiny, tmp_path, change, match):
    folder = _copy(tiny, tmp_path)
    change(folder)
    with pytest.raises(PodiumError, match=match) as e:
        load_pairrm(folder, device="cpu")
    assert str(folder) in str(e.value)


def test_a_missing_or_misshapen_tensor_is_named(tiny, tmp_path):
    folder = _copy(tiny, tmp_path)
    state = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in state.items() if k != "head_layer.4.bias"}, folder / "model.safetensors")
    with pytest.raises(PodiumError, match=r"lacks 1 tensors of PairRM \(head_layer.4.bias\)"):
        load_pairrm(folder, device="cpu")
    save_file({**state, "head_layer.1.weight": state["head_layer.1.weight"][:, :3].contiguous()}, folder / "model.safetensors")
    with pytest.raises(PodiumError, match=r"tensor 'head_layer.1.weight' has shape \[32, 3\]"):
        load_pairrm(folder, device="cpu")


def test_hf_prefix_ids_must_be_the_tokenizers(tiny, tmp_path):
    folder = _copy(tiny, tmp_path, "hf")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"source_prefix_id": 7}))
    with pytest.raises(PodiumError, match="prefix ids .* are not the tokenizer's marker ids"):
        load_pairrm(folder, device="cpu")
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "cand_prefix_id"}))
    with pytest.raises(PodiumError, match="no integer 'cand_prefix_id'"):
        load_pairrm(folder, device="cpu")


def test_an_unreachable_backbone_is_a_clear_error(tiny, tmp_path):
    folder = _copy(tiny, tmp_path)
    config = json.loads((folder / "config.json").read_text()) | {"model_name": str(tmp_path / "nowhere" / "deberta")}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PodiumError, match="model_name .*nowhere.*not a local folder, and the Hub did not give it"):
        load_pairrm(folder, device="cpu")


@pytest.mark.gpu
def test_fp16_on_cuda_as_llm_blender_runs_it(tiny, judge):
    gpu = PairRMJudge(load_pairrm(tiny["llm-blender"], device="cuda"))
    assert gpu.pairrm.dtype == torch.float16
    for a, b in zip(gpu.logit_matrices(PROMPTS), judge.logit_matrices(PROMPTS)):
        torch.testing.assert_close(a, b, atol=5e-2, rtol=0)


def test_the_forward_with_cached_relative_positions_is_debertas_own(judge):
    """PairRMModel runs the encoder on relative positions built once (the top-left block of a larger matrix);
    the states at the markers equal DebertaV2Model.forward's, bit for bit, padded or not."""
    model = judge.pairrm.model
    torch.manual_seed(0)
    for length, width in [(40, 40), (90, 130), (700, 700)]:
        ids = torch.randint(5, 300, (2, width))
        mask = torch.ones(2, width, dtype=torch.long)
        mask[1, length:] = 0
        markers = torch.tensor([[1, 5, 9], [1, 6, 12]])
        with torch.inference_mode():
            ours = model(ids, mask, markers)
            hidden = model.pretrained_model(input_ids=ids, attention_mask=mask).last_hidden_state
            rows = torch.arange(2)
            src, c1, c2 = (hidden[rows, markers[:, k]] for k in range(3))
            theirs = (model.head_layer(torch.cat([src, c1], -1)) - model.head_layer(torch.cat([src, c2], -1))).mean(-1)
        assert torch.equal(ours, theirs)
