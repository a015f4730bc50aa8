"""The import rule of docs/ARCHITECTURE.md, read from the source with ast (nothing is imported).

- a module imports only from its own layer or below (every import counts, also one inside a function);
- the import graph has no cycles;
- only podium.cli parses arguments (argparse) and nothing below it imports podium.cli;
- a function-level import is an optional or slow package (named in LAZY_PACKAGES) or listed in
  KNOWN_LAZY with its reason;
- no two public top-level names (functions, classes, constant tables) are defined twice.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src"

# Bottom to top. A module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("podium", "podium.errors", "podium.limits", "podium.config", "podium.stages", "podium.refs")),
    ("math", ("podium.losses", "podium.merging.methods", "podium.merging.sparsify", "podium.generation.sampling",
              "podium.evaluation.leaderboard", "podium.evaluation.suites")),
    ("components", ("podium.data", "podium.models", "podium.tasks", "podium.generation", "podium.training",
                    "podium.judging", "podium.selfplay.targets", "podium.selfplay.held_out", "podium.pairs.dpop",
                    "podium.evaluation", "podium.merging", "podium.cards", "podium.rundir", "podium.run_lock", "podium.hub",
                    "podium.distributed", "podium.cache_auth", "podium.fingerprint", "podium.ownership")),
    ("stages", ("podium.models.build", "podium.tasks.stage", "podium.training.sft", "podium.training.train",
                "podium.evaluation.stage", "podium.generation.stage", "podium.selfplay.sgd", "podium.pairs.stage",
                "podium.selfplay.sppo", "podium.merging.stage", "podium.cards.stage")),
    ("pipeline", ("podium.pipeline", "podium.seeding", "podium.multiseed", "podium.preview", "podium.preflight")),
    ("cli", ("podium.cli", "podium.__main__")),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}

# Packages that are optional extras or take seconds to import: imported inside the function that needs them.
LAZY_PACKAGES = {"vllm", "lm_eval", "llm_blender", "matplotlib", "datasets", "peft", "deepspeed",
                 "pyarrow"}  # pyarrow: with datasets, only Arrow sources need it
# Other function-level imports, each with its reason (module, imported module).
KNOWN_LAZY = {
    ("podium.training.loop", "accelerate"): "accelerate starts only with a training run (training/loop.py, harden)",
    ("podium.training.loop", "accelerate.utils"): "as accelerate above: the trackers' ProjectConfiguration (cluster)",
    ("podium.merging.reader", "huggingface_hub"): "0.5 s of imports that only a Hub id (not a local folder) needs",
}
# Import cycles tolerated for now: none.
KNOWN_CYCLE_EDGES: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / "podium").rglob("*.py"))}


def layer(module: str) -> str:
    best, best_len = None, -1
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = name, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS (and docs/ARCHITECTURE.md)"
    return best


def imports(module: str) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function?, line) for every import in `module`; `from a import b` is a.b
    when a.b is a podium module."""
    tree = ast.parse(MODULES[module].read_text())
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((alias.name, in_function, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    sub = f"{child.module}.{alias.name}"
                    out.append((sub if sub in MODULES else child.module, in_function, child.lineno))
            visit(child, nested)

    visit(tree, False)
    return out


def podium_edges() -> dict[str, set[str]]:
    graph = collections.defaultdict(set)
    for module in MODULES:
        for target, _, _ in imports(module):
            if target in MODULES and target != module:
                graph[module].add(target)
    return graph


def test_every_module_has_a_layer():
    for module in MODULES:
        layer(module)


def test_no_module_imports_a_layer_above_it():
    wrong = [f"{m} ({layer(m)}) imports {t} ({layer(t)}) at line {line}"
             for m in MODULES for t, _, line in imports(m) if t in MODULES and RANK[layer(t)] > RANK[layer(m)]]
    assert not wrong, "\n".join(wrong)


def test_the_import_graph_has_no_cycles():
    graph = podium_edges()
    for a, b in KNOWN_CYCLE_EDGES:
        graph[a].discard(b)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles = []

    def dfs(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                dfs(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(MODULES):
        if module not in state:
            dfs(module, [module])
    assert not cycles, "\n".join(cycles)


def test_only_the_cli_parses_arguments():
    users = [f"{m}:{line}" for m in MODULES for t, _, line in imports(m)
             if t == "argparse" and layer(m) != "cli"]
    assert not users, f"argparse outside podium.cli: {users}"


def test_function_level_imports_are_justified():
    unexplained, used = [], set()
    for m in MODULES:
        for target, in_function, line in imports(m):
            if in_function and (m, target) in KNOWN_LAZY:
                used.add((m, target))
            if not in_function or target.split(".")[0] in LAZY_PACKAGES or (m, target) in KNOWN_LAZY:
                continue
            unexplained.append(f"{m}:{line} imports {target} inside a function")
    assert not unexplained, ("import at the top of the module, or add the package to LAZY_PACKAGES with a "
                             "reason:\n" + "\n".join(unexplained))
    assert set(KNOWN_LAZY) <= used, f"KNOWN_LAZY entries no module needs any more: {sorted(set(KNOWN_LAZY) - used)}"


def test_public_names_are_defined_once():
    defined = collections.defaultdict(list)
    for module, path in MODULES.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()]
            else:
                names = []
            for name in names:
                # Every command module of podium.cli has its `main`, as a console script would.
                if not name.startswith("_") and not (layer(module) == "cli" and name == "main"):
                    defined[name].append(module)
    doubles = {name: mods for name, mods in defined.items() if len(mods) > 1}
    assert not doubles, doubles


@pytest.mark.parametrize("bad, message", [
    ("import argparse\n", "argparse outside podium.cli"),
    ("from podium.cli import main\n", "imports podium.cli"),
])
def test_the_checks_can_fail(bad, message, monkeypatch, tmp_path):
    """A library module that parses arguments or imports the CLI is caught."""
    fake = tmp_path / "podium" / "losses" / "fake.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(bad)
    monkeypatch.setitem(MODULES, "podium.losses.fake", fake)
    check = test_only_the_cli_parses_arguments if "argparse" in bad else test_no_module_imports_a_layer_above_it
    with pytest.raises(AssertionError, match=message):
        check()
