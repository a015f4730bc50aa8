"""A recipe stage's references: `"@stage[.output]"` strings become the paths of earlier stages' outputs, and local
files and folders it names enter its key by content fingerprint."""

from __future__ import annotations

import os
import re
from pathlib import Path

from podium.config import Located
from podium.errors import ConfigError, PodiumError
from podium.fingerprint import fingerprint
from podium.hub import looks_local
from podium.limits import path_text_problem
from podium.stages import STAGES

REF = re.compile(r"^@([A-Za-z0-9_\-]+)(?:\.([A-Za-z0-9_\-]+))?$")


def resolve_refs(value, keypath, earlier: dict, located: Located, stage_name: str, deps: list,
                 hashed: list, ref_paths: set, missing: list | None = None):
    """Replace "@stage[.output]" strings by paths; collect dependencies and hash inputs.

    `ref_paths` are the key paths of the stage's typed references (podium.refs: models, datasets,
    input files). Such a reference to a local path enters the stage's key by its content
    fingerprint; a relative one that does not exist from the working directory but does next to
    the recipe is taken from the recipe's folder (recipes can ship their small data files). A
    reference that names a local path which exists in neither place goes to `missing`.
    """
    missing = [] if missing is None else missing
    if isinstance(value, dict):
        return {k: resolve_refs(v, keypath + (k,), earlier, located, stage_name, deps, hashed, ref_paths, missing)
                for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_refs(v, keypath + (i,), earlier, located, stage_name, deps, hashed, ref_paths, missing)
                for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    if value.startswith("@"):
        m = REF.match(value)
        where = located.where(keypath)
        if not m or m.group(1) not in earlier:
            known = ", ".join(earlier) or "none"
            raise ConfigError(f"{where}: stage {stage_name!r}: {value!r} refers to no earlier stage (earlier: {known})")
        ref, out = m.group(1), m.group(2)
        outputs = STAGES[earlier[ref].kind].outputs
        if out is not None and out not in outputs:
            raise ConfigError(f"{where}: stage {stage_name!r}: stage {ref!r} has no output {out!r} "
                              f"(outputs: {', '.join(outputs)})")
        rel = outputs[out] if out else next(iter(outputs.values()))
        if ref not in deps:
            deps.append(ref)
        hashed.append((value, earlier[ref].key))
        return str((earlier[ref].out_dir / rel).resolve())
    if keypath[2:] not in ref_paths:  # keypath = ("stages", i, key...)
        return value
    if problem := path_text_problem(value):  # before pathlib sees it (it raises on such names)
        missing.append(f"{located.where(keypath)}: stage {stage_name!r}: {value[:60]!r}... {problem}")
        return value
    if value.strip() and not Path(value).is_absolute() and not os.path.exists(value):
        beside = Path(located.path).parent / value
        if os.path.exists(beside):
            value = str(beside.resolve())
    if os.path.exists(value):
        try:
            hashed.append((value, fingerprint(Path(value))))
        except PodiumError as e:  # a FIFO or device named as an input: found now, never opened
            missing.append(f"{located.where(keypath)}: stage {stage_name!r}: {e}")
    elif any(looks_local(part) and not os.path.exists(part) for part in value.split("+")):  # BASE+LORA
        missing.append(f"{located.where(keypath)}: stage {stage_name!r}: {value!r} does not exist (looked in "
                       f"{os.getcwd()} and beside the recipe)")
    return value
