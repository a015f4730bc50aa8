"""Inputs are bounded by construction (issue 26, item 5).

The probes: a 200 MB single-line JSONL reached 12.5 GB RSS and aborted; `count: 1e12` spun or exhausted
memory; `max_new_tokens: 1e9` generated past the model's positions; `podium run /dev/zero` and a FIFO as
recipe or data hung or exhausted memory; a local-looking path that did not exist was tried as a Hub id
with network retries for over a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.security.bounds import plant_fifo, time_bound

from podium import hub
from podium.data.mixture import build_mixture, load_rows
from podium.errors import ConfigError, DataError, PodiumError
from podium.files import read_jsonl
from podium.models.io import load_model
from podium.planning import make_plan, plan_problems
from podium.stages import run_stage

SRC = str(Path(__file__).parents[2] / "src")


def test_a_200_mb_single_line_is_refused_in_bounded_memory(tmp_path):
    """The probe's file (sparse: 200 MB of size, no disk), read in a child whose peak RSS is measured."""
    big = tmp_path / "one-line.jsonl"
    with open(big, "wb") as f:
        f.write(b'{"prompt": "')
        f.truncate(200 * 2**20)
    code = textwrap.dedent(f"""
        import resource, sys
        from podium.data.mixture import build_mixture
        from podium.files import read_jsonl
        from podium.errors import DataError
        print("imported_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        for read in (lambda: read_jsonl({str(big)!r}), lambda: build_mixture([{{"path": {str(big)!r}, "count": 5}}])):
            try:
                read()
            except DataError as e:
                print("refused:", e)
        print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": SRC})
    assert out.stdout.count("refused:") == 2, out.stdout + out.stderr  # the record reader and the source reader
    assert "a line longer than 16 MiB" in out.stdout and "PODIUM_MAX_JSONL_LINE_MB" in out.stdout
    imported = int(out.stdout.split("imported_kb")[1].split()[0])
    grown_mb = (int(out.stdout.split("maxrss_kb")[1]) - imported) / 1024
    assert grown_mb < 64, grown_mb  # old code: 12.5 GB (the line, then its objects); now the 16 MiB it read


def test_the_line_limit_is_raised_by_its_setting(tmp_path, monkeypatch):
    p = tmp_path / "d.jsonl"
    p.write_text('{"prompt": "' + "x" * 3000 + '"}\n')
    monkeypatch.setenv("PODIUM_MAX_JSONL_LINE_MB", "0.001")
    with pytest.raises(DataError, match=r"d.jsonl:1: a line longer than 1,048 bytes .* PODIUM_MAX_JSONL_LINE_MB="):
        read_jsonl(p)
    monkeypatch.setenv("PODIUM_MAX_JSONL_LINE_MB", "1")
    assert len(read_jsonl(p)) == 1


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_data_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind):
    path = plant_fifo(tmp_path / "d.jsonl") if kind == "fifo" else Path("/dev/zero")
    with time_bound(20):  # old code: blocked on the FIFO, read /dev/zero forever
        with pytest.raises(DataError, match="not a regular file"):
            read_jsonl(path)
        with pytest.raises(DataError, match="not a regular file"):
            load_rows(str(path))


def test_a_fifo_named_as_a_recipe_input_is_a_plan_problem(tmp_path):
    fifo = plant_fifo(tmp_path / "d.jsonl")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"stages:\n  - {{name: sft, kind: sft, model: org/m, data: {fifo}}}\n")
    with time_bound(20):
        problems = plan_problems(make_plan(str(recipe), output=str(tmp_path / "run")))
    assert any("FIFO" in p for p in problems), problems


def test_count_is_checked_against_the_limit_when_the_plan_is_made(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {name: base, kind: tiny_model}\n"
                      "  - {name: sft, kind: sft, model: '@base', data: [{task: arithmetic, count: 1.0e+12}]}\n")
    with time_bound(20), pytest.raises(ConfigError, match=r"r.yaml:3: stage 'sft': key 'data.0.count': .*"
                                                           "over the limit on the rows drawn from one data source"):
        make_plan(str(recipe), output=str(tmp_path / "run"))


def test_count_is_checked_when_items_are_drawn_too():
    with time_bound(20), pytest.raises(ConfigError, match="PODIUM_MAX_SOURCE_ROWS"):
        build_mixture([{"task": "arithmetic", "count": 10**12}])


def test_a_task_difficulty_that_would_spin_is_refused_when_validated(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {name: t, kind: tasks, train: 2, test: 2, difficulty: {max_digits: 1000000000}}\n"
                      "  - {name: e, kind: eval, model: x/y, difficulty: {max_digits: 1000000000}}\n")
    with time_bound(20), pytest.raises(ConfigError, match="max_digits <= 100"):
        make_plan(str(recipe), output=str(tmp_path / "run"))


def test_max_new_tokens_is_checked_against_the_models_positions(tiny_dir, tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n')
    with time_bound(60), pytest.raises(PodiumError, match=r"max_new_tokens=1,000,000,000 does not fit the model's 512 "
                                                           "positions"):
        run_stage("generate", {"model": str(tiny_dir), "prompts": str(tmp_path / "p.jsonl"),
                               "max_new_tokens": 10**9}, tmp_path / "out")


def test_generation_stops_at_the_models_positions(tiny_dir):
    """A model that never emits EOS, a 400-token prompt and max_new_tokens 500: the old sampler generated all 500
    (positions 400..900 of a 512-position model); now the completion ends at the last position."""
    from podium.generation.hf_sampler import TransformersSampler
    from podium.generation.sampler import SamplingParams
    from podium.models.io import load_model, load_tokenizer

    model, tok = load_model(tiny_dir), load_tokenizer(tiny_dir)
    sampler = TransformersSampler(model, tok, batch_size=1, lean=False)
    sampler.eos_ids = [len(tok) + 10]  # an id no model emits: only the length limit stops it
    prompt = "1" * 400
    width = len(tok(prompt)["input_ids"])
    (completion,) = sampler.generate([prompt], n=1, params=SamplingParams(temperature=1.0, max_new_tokens=500),
                                     seed=0)[0]
    assert completion.num_tokens == 512 - width and completion.finish_reason == "length"


@pytest.fixture
def no_hub(monkeypatch):
    """Fail the test on any Hub request; count the reachability probes."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"a Hub request was made: {args}")

    monkeypatch.setattr("huggingface_hub.snapshot_download", refuse)
    monkeypatch.setattr("transformers.AutoConfig.from_pretrained", refuse)
    return calls


@pytest.mark.parametrize("ref", ["./models/mine", "models/mine", "/nonexistent/mine", "mine.jsonl", "a/b/c"])
def test_a_local_looking_path_that_does_not_exist_is_never_sent_to_the_hub(tmp_path, monkeypatch, no_hub, ref):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()  # so `models/mine` is a path under a local folder, not an org/name
    with time_bound(20):
        with pytest.raises(PodiumError, match="does not exist"):
            load_model(ref)
        with pytest.raises(DataError, match="does not exist"):
            load_rows(ref)
    assert no_hub == []


def test_an_unreachable_hub_is_asked_once_then_the_process_stays_offline(monkeypatch):
    """Offline lookups fail within seconds: one probe with a short timeout and no retries, then the libraries
    look in the local cache only (HF_HUB_OFFLINE) instead of retrying every file for half a minute."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_online", None)
    probes = []

    class Session:
        def head(self, url, timeout):
            probes.append(timeout)
            raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "get_session", lambda: Session())
    for repo in ("org/one", "org/two", "org/three"):
        ok, why = hub.reachable(repo, "model")
        assert not ok and "not reachable" in why
    assert probes == [hub.PROBE_TIMEOUT] and hub.PROBE_TIMEOUT <= 5
    assert huggingface_hub.constants.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"
    with time_bound(30), pytest.raises(PodiumError, match="could not load model 'org/one'"):
        load_model("org/one")  # the local cache only: no retries
