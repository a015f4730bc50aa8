"""Hypothesis strategies for podium's inputs: recipes, overrides, data rows, annotation and results files, model
folders. Each comes valid, near-valid (one field changed) and hostile (wrong types, extreme numbers, traversal,
FIFOs, /dev/zero, deep nesting, damaged files).

Paths inside generated inputs are tokens (`{IN}`, `{FIFO}`, ...) that `place` replaces with paths of the
example's sandbox, so every input a run reads is inside it.
"""

from __future__ import annotations

import json
import math
import struct

from hypothesis import strategies as st

# Path tokens, replaced per example by `place`.
IN, DATA, PAIRS, FIFO, MODEL, MISSING = "{IN}", "{DATA}", "{PAIRS}", "{FIFO}", "{MODEL}", "{MISSING}"
PATH_TOKENS = (IN, DATA, PAIRS, FIFO, MODEL, MISSING)

# Numbers a careful adversary tries: boundaries, huge, negative, non-finite, booleans where numbers go.
NUMBERS = st.one_of(
    st.sampled_from([0, 1, -1, 2, 3, 8, 64, 255, 256, 10**6, 10**12, 2**63 - 1, 2**63, 2**64, 10**30, -(10**30),
                     0.0, -0.0, 0.5, 1.0, 1e-9, 1e9, 1e20, 1e308, math.inf, -math.inf, math.nan, True, False]),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
STRINGS = st.one_of(
    st.sampled_from(["", " ", ".", "..", "../..", "/", "/etc/passwd", "/dev/zero", "~", "a/b", "a/b/c", "org/model",
                     "@base", "@sft", "@sft.model", "@nope", "@", "x" * 300, "\x00", "data/../../x", "run/",
                     "arithmetic", "rps", "dpo", "sft", "float32", "bfloat16", "auto", "none", "true", "1e5",
                     "${HOME}", "*", "?", "\u202e", "ünïcödé", "a\nb", *PATH_TOKENS]),
    st.text(max_size=40),
)
SCALARS = st.one_of(st.none(), NUMBERS, STRINGS)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(STRINGS, inner, max_size=4)), max_leaves=12)

KINDS = ["tiny_model", "tasks", "sft", "train", "generate", "eval", "sgd", "pairs", "selfplay", "merge", "card"]
# Settings each kind takes, with values that make a valid stage (mutated below).
VALID_SETTINGS = {
    "tiny_model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "seed": 0},
    "tasks": {"task": "arithmetic", "train": 4, "test": 2, "difficulty": {"max_digits": 1}},
    "sft": {"model": "@base", "data": [{"task": "arithmetic", "count": 8}], "max_steps": 1, "batch_size": 2,
            "learning_rate": 1e-3, "max_length": 64},
    "train": {"model": "@base", "data": PAIRS, "objective": "dpo", "beta": 0.1, "max_steps": 1},
    "generate": {"model": "@base", "prompts": DATA, "n": 2, "max_new_tokens": 8, "temperature": 0.7},
    "eval": {"model": "@base", "task": "arithmetic", "count": 4, "max_new_tokens": 8},
    "sgd": {"model": "@base", "task": "arithmetic", "count": 4, "num_samples": 2},
    "pairs": {"builder": "corrupt_number", "data": DATA},
    "selfplay": {"model": "@base", "task": "arithmetic", "iterations": 1},
    "merge": {"config": {"merge_method": "linear", "models": [{"model": MODEL, "parameters": {"weight": 1}},
                                                              {"model": MODEL, "parameters": {"weight": 1}}]}},
    "card": {"model": "@base"},
}


def stage_names():
    return st.one_of(st.sampled_from(["base", "sft", "dpo", "eval", "m", "x", "report", "seed-0", "..", "a/b", "",
                                      "s" * 240, "s" * 300, "-", "_"]), st.text(max_size=12))


@st.composite
def stages(draw, index: int = 1):
    kind = draw(st.sampled_from(KINDS + ["nope"]))
    settings = dict(VALID_SETTINGS.get(kind, {}))
    how = draw(st.sampled_from(["valid", "valid", "near", "near", "hostile"]))
    if how == "near" and settings:  # one setting changed, dropped or added
        key = draw(st.sampled_from(sorted(settings) + ["unknown_key"]))
        if draw(st.booleans()):
            settings[key] = draw(VALUES)
        else:
            settings.pop(key, None)
    elif how == "hostile":
        settings = draw(st.dictionaries(st.sampled_from(sorted({k for s in VALID_SETTINGS.values() for k in s})
                                                        + ["seed", "launch", "name", "kind", "output_dir"]),
                                        VALUES, max_size=5))
    name = draw(stage_names()) if how == "hostile" or draw(st.integers(0, 5)) == 0 else f"s{index}"
    return {"name": name, "kind": kind, **settings}


@st.composite
def recipes(draw):
    """A recipe mapping: a valid chain (base, then stages reading it), near-valid or hostile."""
    chain = [{"name": "base", "kind": "tiny_model", **VALID_SETTINGS["tiny_model"]}]
    chain += [draw(stages(i)) for i in range(1, draw(st.integers(0, 3)) + 1)]
    recipe = {"name": draw(stage_names()) if draw(st.integers(0, 4)) == 0 else "fuzz", "stages": chain}
    if draw(st.integers(0, 3)) == 0:
        for key in draw(st.lists(st.sampled_from(["seed", "seeds", "output_dir", "trust_remote_code", "allow_pickle",
                                                  "launch", "extra"]), max_size=2)):
            recipe[key] = draw(st.one_of(VALUES, st.sampled_from([0, 1, [0, 1], True, False])))
    if draw(st.integers(0, 9)) == 0:
        recipe = draw(VALUES)  # anything at all
    return recipe


HOSTILE_YAML = st.sampled_from([
    "", "---\n", "[", "{", "a: [", "stages: " + "[" * 200 + "]" * 200, "x: &x [*x]\n",
    "a: &a {b: 1}\nc: {<<: *a, <<: *a}\n", "a: !!python/object/apply:os.system [echo hi]\n",
    "stages: !!binary aGk=\n", "? [1]\n: 2\n", "\ufeffstages: []\n", "stages:\n  - {name: a, kind: tiny_model}\n" * 3,
    "a: 1\na: 2\n", "stages: [{name: a, kind: tiny_model, hidden_size: 1e400}]\n", "\t\tstages: x\n",
])


def overrides():
    valid = st.sampled_from(["seed=1", "base.hidden_size=16", "base.seed=3", "sft.data.0.count=4", "sft.batch_size=1",
                             "sft.max_steps=2", "sft.learning_rate=1e-4", "name=other", "sft.packing=true"])
    return st.one_of(st.lists(valid, max_size=3), hostile_overrides())


def hostile_overrides():
    key = st.one_of(st.sampled_from(["seed", "seeds", "name", "base.hidden_size", "base.seed", "sft.data.0.count",
                                     "sft.batch_size", "sft.max_steps", "sft.learning_rate", "nope.x", "base",
                                     "stages", "stages.0.kind", "sft.data.9.count", "base.num_layers.x", ".", ""]),
                    st.text(max_size=10))
    value = st.one_of(st.sampled_from(["1", "-1", "true", "null", ".inf", ".nan", "1e20", "1e-3", "[1, 2]", "{a: 1}",
                                       "[", "x", "", "0x10", "1_000", "~", "'quoted'", "&a [*a]"]), st.text(max_size=10))
    return st.lists(st.one_of(st.builds(lambda k, v: f"{k}={v}", key, value), st.text(max_size=10)), max_size=3)


# Records: SFT and preference rows with right and wrong types.
TEXT = st.one_of(st.text(max_size=20), st.sampled_from(["", " ", "<|im_end|>", "\x00", "1 + 1 = 2"]))
MESSAGE = st.fixed_dictionaries({"role": st.one_of(st.sampled_from(["user", "assistant", "system", ""]), VALUES),
                                 "content": st.one_of(TEXT, VALUES)})
FIELD = st.one_of(TEXT, st.lists(MESSAGE, max_size=3), VALUES)


@st.composite
def data_rows(draw, kind: str | None = None):
    kind = kind or draw(st.sampled_from(["sft", "chat", "pair", "chat-pair", "any", "any"]))
    if kind == "sft":
        return {"prompt": draw(TEXT), "completion": draw(TEXT)}
    if kind == "chat":
        return {"messages": [{"role": "user", "content": draw(TEXT)}, {"role": "assistant", "content": draw(TEXT)}]}
    if kind == "pair":
        return {"prompt": draw(TEXT), "chosen": draw(TEXT), "rejected": draw(TEXT),
                **({"chosen_prob": draw(NUMBERS)} if draw(st.booleans()) else {})}
    if kind == "chat-pair":
        return {"prompt": [{"role": "user", "content": draw(TEXT)}],
                "chosen": [{"role": "assistant", "content": draw(TEXT)}],
                "rejected": [{"role": "assistant", "content": draw(TEXT)}]}
    row = {}
    for key in draw(st.lists(st.sampled_from(["prompt", "completion", "messages", "chosen", "rejected", "answer",
                                              "task", "chosen_prob", "rejected_prob", "score", "_source"]),
                             max_size=5, unique=True)):
        row[key] = draw(NUMBERS) if key.endswith(("prob", "score")) and draw(st.booleans()) else draw(FIELD)
    return row


@st.composite
def jsonl_bytes(draw):
    """A JSONL file: valid rows, near-valid rows and hostile lines (bytes that are not UTF-8, deep nesting, ...)."""
    lines = []
    clean = draw(st.booleans())  # half the files hold only well-formed rows of one format
    fmt = draw(st.sampled_from(["sft", "chat", "pair", "chat-pair"]))
    for _ in range(draw(st.integers(0, 6))):
        if clean:
            lines.append(json.dumps(draw(data_rows(fmt))).encode())
            continue
        kind = draw(st.sampled_from(["row", "row", "row", "hostile"]))
        if kind == "row":
            lines.append(json.dumps(draw(data_rows())).encode())
        else:
            lines.append(draw(st.sampled_from([b"", b"   ", b"[1, 2]", b"null", b"\xff\xfe", b'{"a": 1', b"{}",
                                               b"[" * 5000 + b"]" * 5000, b'{"prompt": NaN, "completion": "x"}',
                                               b'\xef\xbb\xbf{"prompt": "a", "completion": "b"}',
                                               b'{"prompt": "a", "completion": "b", "prompt": 1}'])))
    return b"\n".join(lines) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))


@st.composite
def annotation_files(draw):
    """AlpacaEval annotation files (JSON list or JSONL) and podium judgments, near-valid or hostile."""
    rows = []
    clean = draw(st.booleans())  # half the files are well-formed annotations
    for _ in range(draw(st.integers(0, 6))):
        valid = clean or draw(st.booleans())
        row = {"instruction": draw(TEXT), "output_1": draw(TEXT if valid else st.one_of(TEXT, VALUES)),
               "output_2": draw(TEXT if valid else st.one_of(TEXT, VALUES)),
               "preference": draw(st.floats(1, 2) if valid else st.one_of(
                   st.sampled_from([1, 2, 1.5, 0, None, 3, -1, math.nan, math.inf, "2", True]), NUMBERS))}
        if not valid and draw(st.booleans()):
            row = {k: v for k, v in row.items() if draw(st.booleans())}
        if not clean and draw(st.integers(0, 4)) == 0:
            row = {"preference": draw(NUMBERS), "model_response": draw(TEXT), "baseline_response": draw(TEXT)}
        rows.append(row)
    if draw(st.booleans()):
        return json.dumps(rows if clean or draw(st.integers(0, 5)) else draw(VALUES), allow_nan=True).encode()
    return "\n".join(json.dumps(r, allow_nan=True) for r in rows).encode()


@st.composite
def results_files(draw):
    """lm-eval results files: valid scores, percentages, NaN, wrong types, wrong shapes."""
    tasks = ["leaderboard_mmlu_pro", "leaderboard_ifeval", "leaderboard_bbh_navigate", "leaderboard_gpqa",
             "leaderboard_math_hard", "leaderboard_musr_team_allocation", "arc_challenge", "hellaswag", "gsm8k",
             "mmlu_anatomy", "winogrande", "truthfulqa_mc2", "other"]
    metrics = ["acc,none", "acc_norm,none", "exact_match,none", "inst_level_strict_acc,none",
               "prompt_level_strict_acc,none", "mc2", "exact_match,strict-match", "acc_stderr,none"]
    results = {}
    for task in draw(st.lists(st.sampled_from(tasks), max_size=6, unique=True)):
        row = {m: draw(st.one_of(st.floats(0, 1), NUMBERS, STRINGS, st.none()))
               for m in draw(st.lists(st.sampled_from(metrics), max_size=3, unique=True))}
        results[task] = row if draw(st.integers(0, 6)) else draw(VALUES)
    doc = {"results": results}
    if draw(st.booleans()):
        doc["n-samples"] = draw(st.one_of(VALUES, st.dictionaries(st.sampled_from(tasks), st.dictionaries(
            st.sampled_from(["effective", "original"]), NUMBERS, max_size=2), max_size=3)))
    if draw(st.integers(0, 5)) == 0:
        doc = draw(VALUES)
    return json.dumps(doc, allow_nan=True).encode()


# Model folders: the tiny model's files, then one or two things changed.
CONFIG_FIELDS = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "vocab_size", "max_position_embeddings", "head_dim", "model_type",
                 "architectures", "tie_word_embeddings", "rope_theta", "torch_dtype", "text_config"]
MODEL_DAMAGE = st.sampled_from(["none", "config-field", "config-drop", "config-garbage", "weights-truncate",
                                "weights-garbage", "weights-header-huge", "weights-header-lies", "weights-nan",
                                "weights-drop-tensor", "weights-fifo", "weights-dir", "config-fifo", "no-weights",
                                "pickle-only", "tokenizer-garbage", "symlink-zero"])


def safetensors_header_only(header: dict, total: int) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * max(0, total)
