"""The `podium` command: dispatch, help, and missing dependencies named as such (never "unknown command")."""

import sys

from podium.cli import main
from podium.cli.dispatch import COMMANDS, missing_dependency


def test_help_lists_commands_and_stage_kinds(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in [*COMMANDS, "sft", "train", "selfplay", "pairs"]:
        assert f"  {name} " in out


def test_unknown_command_lists_the_commands(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_missing_dependency_is_named_with_its_install_command(monkeypatch, tmp_path, capsys):
    """Without scipy, `podium winrate` said "unknown command 'winrate'" (issue 15). It no longer needs
    scipy; a package it does import at module level (numpy) stands in for any missing one."""
    for mod in ("podium.cli.winrate", "podium.evaluation.winrate"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy -> ModuleNotFoundError(name="numpy")
    assert main(["winrate", str(tmp_path / "j.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "unknown command" not in err
    assert "podium winrate needs the package 'numpy'" in err and "pip install numpy" in err


def test_optional_extras_name_the_extra():
    text = missing_dependency("eval", ModuleNotFoundError("No module named 'lm_eval'", name="lm_eval"))
    assert text == "podium eval needs the package 'lm-eval', which is not installed: pip install 'podium[eval]'"
    assert "podium[gpu]" in missing_dependency("run", ModuleNotFoundError(name="vllm.engine"))
    assert missing_dependency("run", ModuleNotFoundError(name="podium.nope")) is None  # a bug, not an install
