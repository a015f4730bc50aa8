"""What each training or merging method is, in one paragraph, and how to cite it.

A stage is mapped to a method by its kind and, for the shared `train` stage, by its
`objective` (or `loss`) field; merges by mergekit's `merge_method`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    key: str
    title: str
    summary: str
    citation: str  # BibTeX
    tags: tuple[str, ...] = ()


METHODS: dict[str, Method] = {m.key: m for m in [
    Method("sft", "Supervised fine-tuning", "Next-token cross-entropy on the assistant turns of chat data.", "",
           ("sft",)),
    Method("dpo", "Direct Preference Optimization (DPO)",
           "Trains the policy directly on preference pairs with the loss -log σ(β(ρ_w − ρ_l)), where ρ is the "
           "policy-to-reference log-ratio of a response.",
           "@inproceedings{rafailov2023dpo,\n  title={Direct Preference Optimization: Your Language Model is "
           "Secretly a Reward Model},\n  author={Rafailov, Rafael and Sharma, Archit and Mitchell, Eric and Ermon, "
           "Stefano and Manning, Christopher D. and Finn, Chelsea},\n  booktitle={NeurIPS},\n  year={2023}\n}",
           ("dpo",)),
    Method("ipo", "Identity Preference Optimization (IPO)",
           "Regresses the length-normalised log-ratio margin onto 1/(2β) instead of maximising it.",
           "@inproceedings{azar2024ipo,\n  title={A General Theoretical Paradigm to Understand Learning from Human "
           "Preferences},\n  author={Azar, Mohammad Gheshlaghi and others},\n  booktitle={AISTATS},\n  year={2024}\n}",
           ("ipo",)),
    Method("dpop", "DPO-Positive (DPOP, Smaug)",
           "DPO plus a penalty λ·max(0, −ρ_w) that keeps the likelihood of preferred responses from falling, "
           "for pairs with small edit distance.",
           "@article{pal2024smaug,\n  title={Smaug: Fixing Failure Modes of Preference Optimisation with "
           "DPO-Positive},\n  author={Pal, Arka and Karkhanis, Deep and Dooley, Samuel and Roberts, Manley and "
           "Naidu, Siddartha and White, Colin},\n  journal={arXiv preprint arXiv:2402.13228},\n  year={2024}\n}",
           ("dpop", "smaug")),
    Method("sppo", "Self-Play Preference Optimization (SPPO)",
           "Iterative self-play: sample K responses per prompt, estimate each one's win probability against the "
           "current policy with a preference judge, and regress the log-ratio onto η(p − ½).",
           "@article{wu2024sppo,\n  title={Self-Play Preference Optimization for Language Model Alignment},\n  "
           "author={Wu, Yue and Sun, Zhiqing and Yuan, Huizhuo and Ji, Kaixuan and Yang, Yiming and Gu, "
           "Quanquan},\n  journal={arXiv preprint arXiv:2405.00675},\n  year={2024}\n}",
           ("sppo", "self-play")),
    Method("gpo", "General Preference Optimization (GPO) with a General Preference Model (GPM)",
           "Self-play where a GPM embeds each response and scores preferences with a skew-symmetric form, "
           "capturing intransitive preferences in K passes instead of K².",
           "@article{zhang2024gpm,\n  title={Beyond Bradley-Terry Models: A General Preference Model for Language "
           "Model Alignment},\n  author={Zhang, Yifan and Zhang, Ge and Wu, Yue and Xu, Kangping and Gu, "
           "Quanquan},\n  journal={arXiv preprint arXiv:2410.02197},\n  year={2024}\n}",
           ("gpo", "gpm", "self-play")),
    Method("sgd", "Self-Generated Dataset (SGD, Rhea)",
           "The model answers prompts with gold answers; generations the checker rejects become `rejected`, "
           "the gold answer `chosen`, and the pairs train the model with DPO.",
           "@misc{rhea2024,\n  title={Rhea-72b-v0.5},\n  author={davidkim205},\n  "
           "howpublished={\\url{https://huggingface.co/davidkim205/Rhea-72b-v0.5}},\n  year={2024}\n}",
           ("sgd", "self-generated")),
    Method("merge", "Model merging (mergekit)",
           "Weights of several models combined tensor by tensor following a mergekit configuration.",
           "@article{goddard2024mergekit,\n  title={Arcee's MergeKit: A Toolkit for Merging Large Language "
           "Models},\n  author={Goddard, Charles and others},\n  journal={arXiv preprint arXiv:2403.13257},\n  "
           "year={2024}\n}",
           ("merge", "mergekit")),
    Method("slerp", "Spherical linear interpolation (SLERP) merge",
           "Interpolates two models' weights along the great circle between them, with per-layer factors.",
           "@inproceedings{shoemake1985slerp,\n  title={Animating rotation with quaternion curves},\n  "
           "author={Shoemake, Ken},\n  booktitle={SIGGRAPH},\n  year={1985}\n}",
           ("merge", "mergekit", "slerp")),
]}

TRAINING_KINDS = ("sft", "train", "dpo", "sppo", "sgd", "gpo", "reward", "gpm")
MERGE_KINDS = ("merge",)


def stage_method(kind: str, config: dict) -> Method | None:
    """The method a stage applies, or None for stages that do not change the weights."""
    objective = str(config.get("objective") or config.get("loss") or "").lower()
    if kind in MERGE_KINDS:
        inner = config.get("config") if isinstance(config.get("config"), dict) else config
        merge_method = str(inner.get("merge_method") or "").lower()
        return METHODS.get(merge_method, METHODS["merge"])
    if objective.startswith("sppo"):
        return METHODS["sppo"]
    if objective in METHODS:
        return METHODS[objective]
    if kind in METHODS:
        return METHODS[kind]
    if kind in TRAINING_KINDS:
        return METHODS["dpo"] if kind == "train" else None
    return None
