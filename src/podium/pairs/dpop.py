"""Low-edit-distance preference pairs for DPOP, after Smaug (Pal et al. 2024, "Smaug: Fixing
Failure Modes of Preference Optimisation with DPO-Positive", section 5).

Two builders, both pure functions returning `{"prompt", "chosen", "rejected"}` records:
- number corruption (MetaMath-DPO-FewShot): `rejected` is the worked answer with one
  number changed, so chosen and rejected differ in a few tokens — the regime where DPO
  lowers the chosen likelihood and DPOP's penalty helps;
- multiple choice (ARC-DPO, HellaSwag-DPO): the correct option is paired with each
  wrong option in turn, (n_choices - 1) pairs per item.
Departure from the paper: Smaug corrupts the result of one reasoning step; here any
number may be picked (or only non-final ones with `exclude_final=True`), and later
steps are left as they were.
"""

from __future__ import annotations

import random
import re

# A number not glued to a word or a decimal point before it: 12, 1,000, 3.75. Ordinal
# suffixes (1st, 2nd) are skipped, corrupting them would read as a typo, not a wrong step.
WORKED_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?!\d|st\b|nd\b|rd\b|th\b)")


def find_numbers(text: str) -> list[re.Match]:
    """The numbers in `text`, in order, as regex matches (group 1 integer part, group 2 decimals)."""
    return list(WORKED_NUMBER.finditer(text))


def perturb_number(token: str, rng: random.Random) -> str:
    """A different number written in the same style (commas, decimal places), near the original.

    The change is a nonzero step of 1..9 units of the last written digit; it goes up when
    going down would make the number negative. Examples: "24" -> "21" or "27"; "3.75" ->
    "3.71"; "1,000" -> "1,006".
    """
    integer, _, decimals = token.partition(".")
    places = len(decimals)
    value = int(integer.replace(",", "") + decimals)
    step = rng.randint(1, 9)
    new = value - step if rng.random() < 0.5 and value - step >= 0 else value + step
    digits = str(new).rjust(places + 1, "0")
    int_part, dec_part = (digits[:-places], digits[-places:]) if places else (digits, "")
    if "," in integer:
        int_part = f"{int(int_part):,}"
    return int_part + ("." + dec_part if places else "")


def corrupt_one_number(text: str, seed: int, *, exclude_final: bool = False) -> str | None:
    """`text` with one seeded, randomly chosen number replaced by a different one; None if none qualifies.

    `exclude_final=True` leaves the last number (usually the final answer) alone, so
    the error sits in an intermediate step as in Smaug's MetaMath-DPO data.
    """
    matches = find_numbers(text)
    if exclude_final:
        matches = matches[:-1]
    if not matches:
        return None
    rng = random.Random(seed)
    m = rng.choice(matches)
    return text[: m.start()] + perturb_number(m.group(0), rng) + text[m.end() :]


def number_corruption_pair(prompt, answer: str, seed: int, *, exclude_final: bool = False) -> dict | None:
    """{"prompt", "chosen": answer, "rejected": answer with one number changed}; None if no number."""
    rejected = corrupt_one_number(answer, seed, exclude_final=exclude_final)
    if rejected is None:
        return None
    return {"prompt": prompt, "chosen": answer, "rejected": rejected}


def multiple_choice_pairs(
    prompt,
    choices: list[str],
    answer: int | str,
    *,
    labels: list[str] | None = None,
    template: str = "{text}",
) -> list[dict]:
    """Pair the correct option with each wrong one: len(choices) - 1 records.

    `answer` is the correct option's index, its label ("B", with `labels`, default A, B,
    C...) or its text. Responses are `template.format(label=..., text=...)`, e.g.
    "The answer is {label}. {text}". A wrong option whose response repeats an earlier
    one, or whose text equals the correct one, gives no pair.
    """
    if len(choices) < 2:
        raise ValueError(f"a multiple-choice item needs at least 2 choices, got {len(choices)}")
    labels = labels or [chr(ord("A") + i) for i in range(len(choices))]
    if isinstance(answer, int) and not isinstance(answer, bool):
        correct = answer
    elif answer in labels:
        correct = labels.index(answer)
    elif answer in choices:
        correct = choices.index(answer)
    else:
        raise ValueError(f"answer {answer!r} is neither an index, a label ({', '.join(labels)}) nor a choice")
    if not 0 <= correct < len(choices):
        raise ValueError(f"answer index {correct} out of range for {len(choices)} choices")

    def render(i: int) -> str:
        return template.format(label=labels[i], text=choices[i])

    chosen, seen, pairs = render(correct), set(), []
    for i in range(len(choices)):
        rejected = render(i)
        if i == correct or choices[i] == choices[correct] or rejected in seen:
            continue
        seen.add(rejected)
        pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return pairs
