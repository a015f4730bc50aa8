"""What each training or merging method is, in one paragraph, and how to cite it.

A stage is mapped to a method by its kind and, for the `train` and `selfplay` stages, by its
`objective` (a selfplay stage's `train: {objective: ...}` when it names one), whose title and summary come
from the objective table (`podium.losses.LOSS_SPECS`); a list of objectives is their weighted sum, and
LD-DPO, WPO and an f-divergence other than reverse KL are named in the title when the stage turns them on;
merges by mergekit's `merge_method`.
"""

from __future__ import annotations

from dataclasses import dataclass

from podium.losses import LOSS_SPECS, objective_names
from podium.stages import get_stage


@dataclass(frozen=True)
class Method:
    key: str
    title: str
    summary: str
    citation: str  # BibTeX
    tags: tuple[str, ...] = ()


# BibTeX per method key (`LossSpec.method` for objectives). A test checks every objective's method has one.
CITATIONS: dict[str, str] = {
    "dpo": "@inproceedings{rafailov2023dpo,\n  title={Direct Preference Optimization: Your Language Model is "
           "Secretly a Reward Model},\n  author={Rafailov, Rafael and Sharma, Archit and Mitchell, Eric and Ermon, "
           "Stefano and Manning, Christopher D. and Finn, Chelsea},\n  booktitle={NeurIPS},\n  year={2023}\n}",
    "ipo": "@inproceedings{azar2024ipo,\n  title={A General Theoretical Paradigm to Understand Learning from Human "
           "Preferences},\n  author={Azar, Mohammad Gheshlaghi and others},\n  booktitle={AISTATS},\n  year={2024}\n}",
    "hinge": "@article{zhao2023slic,\n  title={SLiC-HF: Sequence Likelihood Calibration with Human Feedback},\n  "
             "author={Zhao, Yao and Joshi, Rishabh and Liu, Tianqi and Khalman, Misha and Saleh, Mohammad and Liu, "
             "Peter J.},\n  journal={arXiv preprint arXiv:2305.10425},\n  year={2023}\n}",
    "rpo": "@article{pang2024rpo,\n  title={Iterative Reasoning Preference Optimization},\n  author={Pang, Richard "
           "Yuanzhe and Yuan, Weizhe and Cho, Kyunghyun and He, He and Sukhbaatar, Sainbayar and Weston, Jason},\n  "
           "journal={arXiv preprint arXiv:2404.19733},\n  year={2024}\n}",
    "dpop": "@article{pal2024smaug,\n  title={Smaug: Fixing Failure Modes of Preference Optimisation with "
            "DPO-Positive},\n  author={Pal, Arka and Karkhanis, Deep and Dooley, Samuel and Roberts, Manley and "
            "Naidu, Siddartha and White, Colin},\n  journal={arXiv preprint arXiv:2402.13228},\n  year={2024}\n}",
    "sppo": "@article{wu2024sppo,\n  title={Self-Play Preference Optimization for Language Model Alignment},\n  "
            "author={Wu, Yue and Sun, Zhiqing and Yuan, Huizhuo and Ji, Kaixuan and Yang, Yiming and Gu, "
            "Quanquan},\n  journal={arXiv preprint arXiv:2405.00675},\n  year={2024}\n}",
    "gpo": "@article{zhang2024gpm,\n  title={Beyond Bradley-Terry Models: A General Preference Model for Language "
           "Model Alignment},\n  author={Zhang, Yifan and Zhang, Ge and Wu, Yue and Xu, Kangping and Gu, "
           "Quanquan},\n  journal={arXiv preprint arXiv:2410.02197},\n  year={2024}\n}",
    "reward": "@article{ouyang2022instructgpt,\n  title={Training language models to follow instructions with human "
              "feedback},\n  author={Ouyang, Long and others},\n  journal={arXiv preprint arXiv:2203.02155},\n  "
              "year={2022}\n}",
    "sgd": "@misc{rhea2024,\n  title={Rhea-72b-v0.5},\n  author={davidkim205},\n  "
           "howpublished={\\url{https://huggingface.co/davidkim205/Rhea-72b-v0.5}},\n  year={2024}\n}",
    "merge": "@article{goddard2024mergekit,\n  title={Arcee's MergeKit: A Toolkit for Merging Large Language "
             "Models},\n  author={Goddard, Charles and others},\n  journal={arXiv preprint arXiv:2403.13257},\n  "
             "year={2024}\n}",
    "slerp": "@inproceedings{shoemake1985slerp,\n  title={Animating rotation with quaternion curves},\n  "
             "author={Shoemake, Ken},\n  booktitle={SIGGRAPH},\n  year={1985}\n}",
}
CITATIONS["gpm"] = CITATIONS["gpo"]


def _arxiv(key: str, title: str, first_author: str, number: str, year: int) -> str:
    return (f"@article{{{key},\n  title={{{title}}},\n  author={{{first_author} and others}},\n  "
            f"journal={{arXiv preprint arXiv:{number}}},\n  year={{{year}}}\n}}")


# The objectives TRL 1.16 ships beyond DPO (docs/OBJECTIVES.md gives each one's paper).
CITATIONS.update({
    "exo": _arxiv("ji2024exo", "Towards Efficient Exact Optimization of Language Model Alignment", "Ji, Haozhe",
                  "2402.00856", 2024),
    "nca": _arxiv("chen2024nca", "Noise Contrastive Alignment of Language Models with Explicit Rewards",
                  "Chen, Huayu", "2402.05369", 2024),
    "robust": _arxiv("chowdhury2024rdpo", "Provably Robust DPO: Aligning Language Models with Noisy Feedback",
                     "Chowdhury, Sayak Ray", "2403.00409", 2024),
    "bco": _arxiv("jung2024bco", "Binary Classifier Optimization for Large Language Model Alignment",
                  "Jung, Seungjae", "2404.04656", 2024),
    "aot": _arxiv("melnyk2024aot", "Distributional Preference Alignment of LLMs via Optimal Transport",
                  "Melnyk, Igor", "2406.05882", 2024),
    "apo": _arxiv("doosterlinck2024apo", "Anchored Preference Optimization and Contrastive Revisions: Addressing "
                  "Underspecification in Alignment", "D'Oosterlinck, Karel", "2408.06266", 2024),
    "discopop": _arxiv("lu2024discopop", "Discovering Preference Optimization Algorithms with and for Large Language "
                       "Models", "Lu, Chris", "2406.08414", 2024),
    "sft_pairs": CITATIONS["reward"],
    "kto": _arxiv("ethayarajh2024kto", "KTO: Model Alignment as Prospect Theoretic Optimization",
                  "Ethayarajh, Kawin", "2402.01306", 2024),
    "cpo": _arxiv("xu2024cpo", "Contrastive Preference Optimization: Pushing the Boundaries of LLM Performance in "
                  "Machine Translation", "Xu, Haoran", "2401.08417", 2024),
    "simpo": _arxiv("meng2024simpo", "SimPO: Simple Preference Optimization with a Reference-Free Reward",
                    "Meng, Yu", "2405.14734", 2024),
    "orpo": _arxiv("hong2024orpo", "ORPO: Monolithic Preference Optimization without Reference Model",
                   "Hong, Jiwoo", "2403.07691", 2024),
    "mpo": _arxiv("wang2024mpo", "Enhancing the Reasoning Ability of Multimodal Large Language Models via Mixed "
                  "Preference Optimization", "Wang, Weiyun", "2411.10442", 2024),
    "fdpo": _arxiv("wang2023fdpo", "Beyond Reverse KL: Generalizing Direct Preference Optimization with Diverse "
                   "Divergence Constraints", "Wang, Chaoqi", "2309.16240", 2023),
    "lddpo": _arxiv("liu2024lddpo", "Length Desensitization in Direct Preference Optimization", "Liu, Wei",
                    "2409.06411", 2024),
    "wpo": _arxiv("zhou2024wpo", "WPO: Enhancing RLHF with Weighted Preference Optimization", "Zhou, Wenxuan",
                  "2406.11827", 2024),
    "alphapo": _arxiv("gupta2025alphapo", "AlphaPO: Reward Shape Matters for LLM Alignment", "Gupta, Aman",
                      "2501.03884", 2025),
})
MPO = ("sigmoid", "bco_pair", "sft")  # TRL's MPO recipe: loss_type=["sigmoid", "bco_pair", "sft"]

# Methods that are not objectives: keyed by stage kind (sft, sgd) or merge method (merge = any other).
STAGE_METHODS: dict[str, Method] = {m.key: m for m in [
    Method("sft", "Supervised fine-tuning", "Next-token cross-entropy on the assistant turns of chat data.", "",
           ("sft",)),
    Method("sgd", "Self-Generated Dataset (SGD, Rhea)",
           "The model answers prompts with gold answers; generations the checker rejects become `rejected`, "
           "the gold answer `chosen`, and the pairs train the model with DPO.", CITATIONS["sgd"],
           ("sgd", "self-generated")),
    Method("merge", "Model merging (mergekit)",
           "Weights of several models combined tensor by tensor following a mergekit configuration.",
           CITATIONS["merge"], ("merge", "mergekit")),
    Method("slerp", "Spherical linear interpolation (SLERP) merge",
           "Interpolates two models' weights along the great circle between them, with per-layer factors.",
           CITATIONS["slerp"], ("merge", "mergekit", "slerp")),
]}

OBJECTIVE_KINDS = ("train", "selfplay")  # stage kinds whose method is their `objective`
MERGE_KINDS = ("merge",)


def objective_method(objective: str | list[str], config: dict | None = None) -> Method:
    """The card method of a `podium.losses.LOSS_SPECS` objective: its title and summary from the table.

    A list is a weighted sum (`loss_weights` from `config`; MPO when it is TRL's MPO recipe); `config`'s
    `ld_alpha`, `use_weighting` and `f_divergence_type` are named when set and used by the objective.
    """
    config = config or {}
    names = objective_names(objective)
    specs = [LOSS_SPECS[n] for n in names]
    if len(names) == 1:
        spec = specs[0]
        key, title, summary, tags = spec.method, spec.title, spec.summary, list(spec.tags)
        citations = [CITATIONS.get(spec.method, "")]
    else:
        weights = config.get("loss_weights") or [1.0] * len(names)
        parts = " + ".join(f"{w:g} × {n}" for n, w in zip(names, weights))
        mpo = tuple(names) == MPO
        key = "mix:" + "+".join(names)
        title = f"{'Mixed Preference Optimization (MPO): ' if mpo else 'Weighted sum of objectives: '}{parts}"
        summary = " ".join(f"{s.title}: {s.summary}" for s in specs)
        tags = [t for s in specs for t in s.tags] + (["mpo"] if mpo else [])
        citations = ([CITATIONS["mpo"]] if mpo else []) + [CITATIONS.get(s.method, "") for s in specs]
    settings = {k for s in specs for k in s.settings}
    extras = []
    if config.get("ld_alpha") is not None and "ld_alpha" in settings:
        extras.append((f"LD-DPO length desensitisation (α = {config['ld_alpha']:g})", "lddpo"))
    if config.get("use_weighting") and "use_weighting" in settings:
        extras.append(("WPO pair weighting", "wpo"))
    f_div = config.get("f_divergence_type")
    if f_div and f_div != "reverse_kl" and "f_divergence_type" in settings:
        extras.append((f"the {f_div} f-divergence (f-DPO)", "fdpo"))
    if config.get("alphapo_alpha") and "alphapo_alpha" in settings:
        extras.append((f"AlphaPO rewards (α = {config['alphapo_alpha']:g})", "alphapo"))
    if extras:
        title += " with " + ", ".join(text for text, _ in extras)
        key += "|" + ",".join(k for _, k in extras)
        tags += [k for _, k in extras]
        citations += [CITATIONS[k] for _, k in extras]
    citation = "\n\n".join(dict.fromkeys(c for c in citations if c))
    return Method(key, title, summary, citation, tuple(dict.fromkeys(tags)))


def stage_method(kind: str, config: dict) -> Method | None:
    """The method a stage applies, or None for stages that do not change the weights."""
    if kind in MERGE_KINDS:
        inner = config.get("config") if isinstance(config.get("config"), dict) else config
        merge_method = str(inner.get("merge_method") or "").lower()
        return STAGE_METHODS["slerp"] if merge_method == "slerp" else STAGE_METHODS["merge"]
    if kind in OBJECTIVE_KINDS:
        # A stage config read from the recipe (not stage.json) may leave the objective at its default; a
        # selfplay stage trains each iteration with its `train:` objective when that names one.
        inner = config.get("train") if kind == "selfplay" and isinstance(config.get("train"), dict) else {}
        objective = (inner.get("objective") or config.get("objective")
                     or get_stage(kind).config.model_fields["objective"].default)
        names = objective_names(objective) if isinstance(objective, (str, list)) else ()
        if not names or not all(isinstance(n, str) and n in LOSS_SPECS for n in names):
            return None
        return objective_method(objective, {**config, **inner} if inner else config)
    return STAGE_METHODS.get(kind) if kind in ("sft", "sgd") else None
