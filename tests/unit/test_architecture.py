"""The import rule of docs/ARCHITECTURE.md, read from the source with ast (nothing is imported).

- a module imports only from its own layer or below (every import counts, also one inside a function);
- the import graph has no cycles, between modules nor between folders (a folder's modules of one layer
  are one node: data/ importing tasks/ while tasks/ imports data/ is a cycle even when no two files are);
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

# Bottom to top. A module belongs to the layer of its longest matching prefix (a package prefix covers its
# modules; the root `podium` covers only podium/__init__.py). Packages, not single files, are the unit: a
# module sits in another layer than its folder only for a reason given beside it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # errors, bounds on reads, file I/O, YAML and overrides, the stage registry, typed references
    ("foundation", ("podium", "podium.errors", "podium.limits", "podium.files", "podium.config", "podium.stages",
                    "podium.refs")),
    # pure functions and their tables
    ("math", ("podium.losses", "podium.merging.methods", "podium.merging.sparsify", "podium.generation.sampling",
              "podium.evaluation.leaderboard", "podium.evaluation.suites")),
    # the run dir and its locks, fingerprints and cache entries, the Hub, processes and FSDP2
    ("runtime", ("podium.fingerprint", "podium.cache_auth", "podium.run_lock", "podium.hub", "podium.rundir",
                 "podium.distributed")),
    # records, sources, mixtures, rendering; task families
    ("data", ("podium.tasks", "podium.data")),
    # model I/O, heads, introspection, publishing
    ("models", ("podium.models",)),
    # what uses a model: sampling, judging, evaluating, merging, pair building
    ("engines", ("podium.generation", "podium.judging", "podium.evaluation", "podium.merging", "podium.selfplay.targets",
                 "podium.pairs.dpop")),
    # the training loop and its objectives (LoRA merges through podium.merging)
    ("training", ("podium.training",)),
    # model cards, run reports, what a command may write
    ("reporting", ("podium.cards", "podium.ownership")),
    ("stages", ("podium.models.build", "podium.tasks.stage", "podium.training.sft", "podium.training.train",
                "podium.evaluation.stage", "podium.generation.stage", "podium.selfplay.sgd", "podium.pairs.stage",
                "podium.selfplay.sppo", "podium.merging.stage", "podium.cards.stage",
                "podium.selfplay", "podium.pairs",  # the folders of stages (their pure parts are engines)
                "podium.distributed.worker")),  # a rank of a distributed stage: runs the stage function
    ("pipeline", ("podium.recipe", "podium.recipe_refs", "podium.planning", "podium.pipeline", "podium.seeding",
                  "podium.multiseed", "podium.preview", "podium.preflight",
                  # which sources a planned stage reads and the dry-run's check of them: planning
                  "podium.data.stage_sources", "podium.data.source_check")),
    ("cli", ("podium.cli", "podium.__main__")),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}

# Packages that are optional extras or take seconds to import: imported inside the function that needs them.
LAZY_PACKAGES = {"vllm", "lm_eval", "llm_blender", "matplotlib", "datasets", "peft", "deepspeed",
                 "pyarrow"}  # pyarrow: with datasets, only Arrow sources need it
# Other function-level imports, each with its reason (module, imported module).
KNOWN_LAZY = {
    ("podium.training.trackers", "accelerate"): "accelerate starts only with a training run (training/trackers.py, harden)",
    ("podium.training.trackers", "accelerate.utils"): "as accelerate above: the trackers' ProjectConfiguration (cluster)",
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
            covers = module == prefix or (prefix != "podium" and module.startswith(prefix + "."))
            if covers and len(prefix) > best_len:
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


def test_every_layer_entry_exists():
    stale = [prefix for _, prefixes in LAYERS for prefix in prefixes
             if not any(m == prefix or m.startswith(prefix + ".") for m in MODULES)]
    assert not stale, f"LAYERS entries that name no module (moved or deleted?): {stale}"


def test_no_module_imports_a_layer_above_it():
    wrong = [f"{m} ({layer(m)}) imports {t} ({layer(t)}) at line {line}"
             for m in MODULES for t, _, line in imports(m) if t in MODULES and RANK[layer(t)] > RANK[layer(m)]]
    assert not wrong, "\n".join(wrong)


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    """One `a -> b -> ... -> a` line per back edge found by a depth-first walk (empty: no cycle)."""
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

    for node in sorted(graph):
        if node not in state:
            dfs(node, [node])
    return cycles


def folder(module: str) -> str:
    """The node of `module` in the folder graph: its top-level package (or module) under podium, and its layer
    when that differs from the folder's own (tasks/stage.py is a stage, above the tasks it registers)."""
    parts = module.split(".")
    top = ".".join(parts[:2])
    return top if layer(module) == layer(top) else f"{top}@{layer(module)}"


def test_the_import_graph_has_no_cycles():
    graph = podium_edges()
    for a, b in KNOWN_CYCLE_EDGES:
        graph[a].discard(b)
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(cycles)


def test_the_folder_graph_has_no_cycles():
    graph, why = collections.defaultdict(set), {}
    for a, targets in podium_edges().items():
        for b in targets:
            if folder(a) != folder(b):
                graph[folder(a)].add(folder(b))
                why.setdefault((folder(a), folder(b)), f"{a} -> {b}")
    cycles = find_cycles(graph)
    explained = []
    for cycle in cycles:
        nodes = cycle.split(" -> ")
        explained.append(cycle + ": " + "; ".join(why[edge] for edge in zip(nodes, nodes[1:])))
    assert not cycles, "folders that import each other:\n" + "\n".join(explained)


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


@pytest.mark.parametrize("fakes, check, message", [
    ({"podium.losses.fake": "import argparse\n"}, "test_only_the_cli_parses_arguments", "argparse outside podium.cli"),
    ({"podium.losses.fake": "from podium.cli import main\n"}, "test_no_module_imports_a_layer_above_it",
     "imports podium.cli"),
    ({"podium.nowhere": ""}, "test_every_module_has_a_layer", "podium.nowhere is in no layer"),
    ({"podium.losses.fake_a": "from podium.losses import fake_b\n", "podium.losses.fake_b": "import podium.losses.fake_a\n"},
     "test_the_import_graph_has_no_cycles", "podium.losses.fake_a -> podium.losses.fake_b -> podium.losses.fake_a"),
    # data/ already imports tasks/ (data/mixture.py): one file of tasks/ importing data/ closes a folder cycle
    # although no two files import each other.
    ({"podium.tasks.fake": "from podium.data.formats import PAIR_FIELDS\n"}, "test_the_folder_graph_has_no_cycles",
     "podium.tasks.fake -> podium.data.formats"),
    ({"podium.losses.fake": "def f():\n    import json\n"}, "test_function_level_imports_are_justified",
     "podium.losses.fake:2 imports json inside a function"),
    ({"podium.losses.fake": "def read_jsonl(path):\n    return []\n"}, "test_public_names_are_defined_once",
     "read_jsonl"),
    ({}, "test_every_layer_entry_exists", "podium.gone"),
])
def test_each_check_can_fail(fakes, check, message, monkeypatch, tmp_path):
    """Each rule above catches the module that breaks it."""
    for name, text in fakes.items():
        path = tmp_path / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        monkeypatch.setitem(MODULES, name, path)
    if not fakes:  # a LAYERS entry naming nothing
        monkeypatch.setitem(globals(), "LAYERS", LAYERS + [("cli", ("podium.gone",))])
    with pytest.raises(AssertionError, match=message.replace(".", r"\.")):
        globals()[check]()
