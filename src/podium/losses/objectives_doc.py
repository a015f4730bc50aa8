"""The objective and settings tables of docs/OBJECTIVES.md, rendered from the objective table (a test checks the
file holds exactly this)."""

from __future__ import annotations

from podium.losses.settings import SETTINGS
from podium.losses.specs import LOSS_SPECS, LossSpec


def _data(spec: LossSpec) -> str:
    if spec.kind != "policy":
        return "pairs (preference model)"
    if spec.unpaired:
        return "unpaired"
    return "pairs, no reference" if spec.reference_free else "pairs"


def objectives_markdown() -> str:
    """The objective and settings tables of docs/OBJECTIVES.md, rendered from `LOSS_SPECS` and `SETTINGS`."""
    lines = ["| objective | method | loss | paper | TRL 1.16 | data | settings | record fields | self-play "
             "| defaults |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, spec in LOSS_SPECS.items():
        settings = ", ".join(f"`{k}`" for k in spec.settings) or "—"
        fields = ", ".join(f"`{f}`" for f in spec.record_fields) or "—"
        defaults = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in spec.defaults.items())
        lines.append(f"| `{name}` | {spec.title} | {spec.formula or '—'} | {spec.paper or '—'} | {spec.trl or '—'} "
                     f"| {_data(spec)} | {settings} | {fields} | {'yes' if spec.self_play else '—'} "
                     f"| {defaults or '—'} |")
    lines += ["", "| setting | loss keyword | type | default | accepted | meaning |", "|---|---|---|---|---|---|"]
    for s in SETTINGS.values():
        lines.append(f"| `{s.key}` | {f'`{s.arg}`' if s.arg else '—'} | {s.type.__name__} | {s.default!r} "
                     f"| {s.allowed()} | {s.doc} |")
    narrowed = [(name, key, spec.setting(key)) for name, spec in LOSS_SPECS.items() for key in spec.bounds]
    if narrowed:
        lines += ["", "Narrower for one objective: " + "; ".join(
            f"`{name}`: `{key}` {setting.allowed()}" for name, key, setting in narrowed) + "."]
    return "\n".join(lines) + "\n"
