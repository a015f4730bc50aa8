"""Local copies of every Hub dataset the full-scale recipes name, in its published schema.

The rows (tests/fixtures/hub/ORG__NAME.jsonl) are invented; their field names, nesting and types are the
published ones, written from each dataset card's `dataset_info.features` (or, where a card has none, from
the files the repository holds), as noted per dataset below. `build_hub_fixtures(root)` saves each as the
Hub serves it to `datasets`: a `save_to_disk` folder with the card's features (so ARC's `choices` is a
dict of lists and stack-exchange-preferences' `answers` a list of dicts, as `datasets` returns them),
and HC3 as its repository is laid out: a loading script (never run) beside `all.jsonl`, plus its
parquet conversion (`all/train/0000.parquet`, the `refs/convert/parquet` layout).
"""

from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset, Features, List, Value

FIXTURES = Path(__file__).parent / "fixtures" / "hub"
S = Value("string")
I64, F64, BOOL = Value("int64"), Value("float64"), Value("bool")

SCHEMAS: dict[str, Features] = {
    # Card of Open-Orca/SlimOrca: one ShareGPT file (oo-labeled_correct.gpt4.sharegpt.jsonl), rows
    # {"conversations": [{"from": "system"|"human"|"gpt", "value": str, "weight": null|0.0|1.0}]}.
    "Open-Orca/SlimOrca": Features({"conversations": List({"from": S, "value": S, "weight": F64})}),
    # Card of HuggingFaceH4/stack-exchange-preferences, "Data Fields": qid, question, answers (list of
    # answer_id, author, author_id, author_profile, pm_score, selected, text), date, metadata (list of str).
    "HuggingFaceH4/stack-exchange-preferences": Features({
        "qid": I64, "question": S,
        "answers": List({"answer_id": I64, "author": S, "author_id": I64, "author_profile": S, "pm_score": I64,
                         "selected": BOOL, "text": S}),
        "date": S, "metadata": List(S)}),
    # Card of vicgalle/alpaca-gpt4 (dataset_info): instruction, input, output, text (all strings; input "" when none).
    "vicgalle/alpaca-gpt4": Features({"instruction": S, "input": S, "output": S, "text": S}),
    # Card of stanfordnlp/SHP, "Data Structure": post_id, domain, upvote_ratio, history, c_root_id_A/B,
    # created_at_utc_A/B, score_A/B, human_ref_A/B, labels (1: A preferred, 0: B), seconds_difference, score_ratio.
    "stanfordnlp/SHP": Features({
        "post_id": S, "domain": S, "upvote_ratio": F64, "history": S, "c_root_id_A": S, "c_root_id_B": S,
        "created_at_utc_A": I64, "created_at_utc_B": I64, "score_A": I64, "score_B": I64, "human_ref_A": S,
        "human_ref_B": S, "labels": I64, "seconds_difference": F64, "score_ratio": F64}),
    # Hello-SimpleAI/HC3: its loading script HC3.py declares id, question, human_answers (sequence of str),
    # chatgpt_answers (sequence of str), and `source` for the `all` config (read from all.jsonl).
    "Hello-SimpleAI/HC3": Features({"id": S, "question": S, "human_answers": List(S), "chatgpt_answers": List(S),
                                    "source": S}),
    # Card of databricks/databricks-dolly-15k: instruction, context ("" when none), response, category.
    "databricks/databricks-dolly-15k": Features({"instruction": S, "context": S, "response": S, "category": S}),
    # Card of Intel/orca_dpo_pairs (dataset_info): system, question, chosen, rejected (strings; system may be "").
    "Intel/orca_dpo_pairs": Features({"system": S, "question": S, "chosen": S, "rejected": S}),
    # Card of argilla/distilabel-math-preference-dpo (dataset_info): metadata, instruction, chosen_response,
    # chosen_rating, rejected_response, rejected_rating.
    "argilla/distilabel-math-preference-dpo": Features({
        "metadata": S, "instruction": S, "chosen_response": S, "chosen_rating": F64, "rejected_response": S,
        "rejected_rating": F64}),
    # Card of NeuralNovel/Neural-DPO: the Orca DPO layout, system, question, chosen, rejected.
    "NeuralNovel/Neural-DPO": Features({"system": S, "question": S, "chosen": S, "rejected": S}),
    # Card of jondurbin/truthy-dpo-v0.1: id, source, system, prompt, chosen, rejected.
    "jondurbin/truthy-dpo-v0.1": Features({"id": S, "source": S, "system": S, "prompt": S, "chosen": S, "rejected": S}),
    # Card of allenai/ai2_arc (dataset_info, config ARC-Challenge): id, question, choices (sequence of
    # {text, label}: a dict of two lists), answerKey; labels are A-E, or 1-4 on some rows.
    "allenai/ai2_arc": Features({"id": S, "question": S, "choices": {"text": List(S), "label": List(S)}, "answerKey": S}),
    # Card of openbmb/UltraFeedback: source, instruction, models, completions (list of annotations
    # {helpfulness, honesty, instruction_following, truthfulness: {Rating (str, may be "N/A"), Rationale, ...}},
    # critique, custom_system_prompt, fine-grained_score, model, overall_score, principle, response),
    # correct_answers, incorrect_answers.
    "openbmb/UltraFeedback": Features({
        "source": S, "instruction": S, "models": List(S),
        "completions": List({
            "annotations": {
                "helpfulness": {"Rating": S, "Rationale": S, "Rationale For Rating": S, "Type": List(S)},
                "honesty": {"Rating": S, "Rationale": S},
                "instruction_following": {"Rating": S, "Rationale": S},
                "truthfulness": {"Rating": S, "Rationale": S, "Rationale For Rating": S, "Type": List(S)}},
            "critique": S, "custom_system_prompt": S, "fine-grained_score": F64, "model": S, "overall_score": F64,
            "principle": S, "response": S}),
        "correct_answers": List(S), "incorrect_answers": List(S)}),
    # Card of openai/gsm8k (config main): question, answer (the worked solution, final answer after "####").
    "openai/gsm8k": Features({"question": S, "answer": S}),
    # Card of meta-math/MetaMathQA: type, query, original_question, response ("The answer is: X" at the end).
    "meta-math/MetaMathQA": Features({"type": S, "query": S, "original_question": S, "response": S}),
    # Card of abacusai/HellaSwag_DPO_FewShot: prompt, chosen, rejected (strings).
    "abacusai/HellaSwag_DPO_FewShot": Features({"prompt": S, "chosen": S, "rejected": S}),
}
# Written as Hub repositories with a loading script are laid out, not as save_to_disk folders.
SCRIPTED = {"Hello-SimpleAI/HC3": ("HC3.py", "all")}


def fixture_rows(hub_id: str) -> list[dict]:
    path = FIXTURES / (hub_id.replace("/", "__") + ".jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def scripted_repo(hub_id: str, folder: Path, parquet: bool = True, data_file: bool = True) -> Path:
    """`folder` laid out like the Hub repository of a script dataset: the script, its data file, and (with
    `parquet`) the parquet conversion's CONFIG/train/0000.parquet."""
    script, config = SCRIPTED[hub_id]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / script).write_text("# a dataset loading script: current `datasets` refuses to run it\nraise SystemExit\n")
    rows = fixture_rows(hub_id)
    if data_file:
        (folder / f"{config}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if parquet:
        (folder / config / "train").mkdir(parents=True, exist_ok=True)
        Dataset.from_list(rows, features=SCHEMAS[hub_id]).to_parquet(str(folder / config / "train" / "0000.parquet"))
    return folder


def build_hub_fixtures(root: Path) -> dict[str, str]:
    """Every fixture under `root`; returns {Hub id: local path}."""
    out = {}
    for hub_id, features in SCHEMAS.items():
        folder = root / hub_id.replace("/", "__")
        if hub_id in SCRIPTED:  # ORG/NAME/NAME.py: datasets finds a repository's script by the repository's name
            folder = scripted_repo(hub_id, root / hub_id)
        else:
            Dataset.from_list(fixture_rows(hub_id), features=features).save_to_disk(str(folder))
        out[hub_id] = str(folder)
    return out
