"""What each training or merging method is, in one paragraph, and how to cite it.

A stage is mapped to a method by its kind and, for the `train` and `selfplay` stages, by its
`objective`, whose title and summary come from the objective table (`podium.losses.LOSS_SPECS`);
merges by mergekit's `merge_method`.
"""

from __future__ import annotations

from dataclasses import dataclass

from podium.losses import LOSS_SPECS
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


def objective_method(objective: str) -> Method:
    """The card method of a `podium.losses.LOSS_SPECS` objective: its title and summary from the table."""
    spec = LOSS_SPECS[objective]
    return Method(spec.method, spec.title, spec.summary, CITATIONS.get(spec.method, ""), spec.tags)


def stage_method(kind: str, config: dict) -> Method | None:
    """The method a stage applies, or None for stages that do not change the weights."""
    if kind in MERGE_KINDS:
        inner = config.get("config") if isinstance(config.get("config"), dict) else config
        merge_method = str(inner.get("merge_method") or "").lower()
        return STAGE_METHODS["slerp"] if merge_method == "slerp" else STAGE_METHODS["merge"]
    if kind in OBJECTIVE_KINDS:
        # A stage config read from the recipe (not stage.json) may leave the objective at its default.
        objective = config.get("objective") or get_stage(kind).config.model_fields["objective"].default
        return objective_method(objective) if objective in LOSS_SPECS else None
    return STAGE_METHODS.get(kind) if kind in ("sft", "sgd") else None
