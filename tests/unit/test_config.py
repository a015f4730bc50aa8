import subprocess
import sys
import textwrap

import pytest

from podium.config import parse_override, parse_yaml
from podium.errors import ConfigError
from podium.planning import make_plan


def write(tmp_path, text, name="r.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


GOOD = """\
name: t
stages:
  - name: base
    kind: tiny_model
    hidden_size: 16
  - name: sft
    kind: sft
    model: "@base"
    data: [{task: arithmetic, count: 8}]
"""


def test_unknown_key_names_file_line_and_key(tmp_path):
    p = write(tmp_path, GOOD.replace("    hidden_size: 16", "    hidden_size: 16\n    hiden: 3"))
    with pytest.raises(ConfigError) as e:
        make_plan(str(p), output=str(tmp_path / "run"))
    assert f"{p}:6:" in str(e.value) and "unknown key 'hiden'" in str(e.value) and "'base'" in str(e.value)


def test_wrong_type_names_line(tmp_path):
    p = write(tmp_path, GOOD.replace("hidden_size: 16", "hidden_size: big"))
    with pytest.raises(ConfigError) as e:
        make_plan(str(p), output=str(tmp_path / "run"))
    assert f"{p}:5:" in str(e.value) and "hidden_size" in str(e.value)


def test_dangling_reference(tmp_path):
    p = write(tmp_path, GOOD.replace('"@base"', '"@bsae"'))
    with pytest.raises(ConfigError) as e:
        make_plan(str(p), output=str(tmp_path / "run"))
    assert f"{p}:8:" in str(e.value) and "'@bsae' refers to no earlier stage" in str(e.value)


def test_unknown_kind_and_missing_name(tmp_path):
    p = write(tmp_path, GOOD.replace("kind: sft", "kind: sfft"))
    with pytest.raises(ConfigError, match=r"r.yaml:7: unknown stage kind 'sfft'"):
        make_plan(str(p), output=str(tmp_path / "run"))


def test_invalid_yaml_and_duplicate_keys():
    with pytest.raises(ConfigError, match=r"x.yaml:3: invalid YAML: expected .,. or .\]."):
        parse_yaml("a: 1\nb: [1, 2\nc: 3\n", "x.yaml")
    with pytest.raises(ConfigError, match=r"x.yaml:2: duplicate key 'a'"):
        parse_yaml("a: 1\na: 2\n", "x.yaml")


def test_overrides(tmp_path):
    assert parse_override("sft.learning_rate=1e-3") == (["sft", "learning_rate"], 0.001)
    assert parse_override("sft.lora.r=8") == (["sft", "lora", "r"], 8)
    p = write(tmp_path, GOOD)
    plan = make_plan(str(p), ["sft.learning_rate=2e-3", "sft.data.0.count=5", "base.hidden_size=24"],
                     output=str(tmp_path / "run"))
    sft = plan.stages[1].config
    assert sft.learning_rate == 0.002 and sft.data[0]["count"] == 5
    assert plan.stages[0].config.hidden_size == 24
    with pytest.raises(ConfigError, match="neither a stage"):
        make_plan(str(p), ["nosuch.x=1"], output=str(tmp_path / "run"))


def test_cli_prints_error_without_traceback(tmp_path):
    p = write(tmp_path, GOOD.replace("hidden_size: 16", "hidden_size: 16\n    learing_rate: 1"))
    r = subprocess.run([sys.executable, "-m", "podium", "run", str(p), "--dry-run"], capture_output=True, text=True,
                       env={"PYTHONPATH": "src", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"{p}:6:" in r.stderr and "learing_rate" in r.stderr
