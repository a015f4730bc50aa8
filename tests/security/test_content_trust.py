"""Caches trust content, not timestamps; cache entries cannot be forged by editing them (issue 26, item 3).

The probes: a reference-cache entry edited with its embedded sha256 recomputed was used (DPO loss 0.6949 ->
0.0488: a poisoned run); a truncated model.safetensors in a finished stage stayed cached; a data or model
folder whose content changed while names, sizes and mtimes stayed (`cp -p`, `touch -r`) stayed cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tests.pref_helpers import PAIRS, TINY

from podium.data.preference import tokenize_pairs
from podium.models.tiny import build_tiny_model
from podium.pipeline import run_plan
from podium.planning import make_plan
from podium.refs import FileRef
from podium.stages import StageConfig, stage
from podium.training import reference

CALLS: list[str] = []


@pytest.fixture(autouse=True)
def own_key(tmp_path, monkeypatch):
    """A cache key of this test's own (the user's key file stays untouched)."""
    monkeypatch.setenv("PODIUM_CACHE_KEY", str(tmp_path / "keys" / "cache.key"))
    monkeypatch.setenv("PODIUM_CACHE", str(tmp_path / "cache-root"))


def test_a_forged_reference_cache_entry_is_refused(tmp_path):
    """The probe: poison the values, recompute the embedded sha256, keep the key: the old code used the entry."""
    model, tok = build_tiny_model(seed=0, **TINY)
    examples, _ = tokenize_pairs(PAIRS, tok, 64)
    cache = tmp_path / "cache"
    truth, hit = reference.cached_reference_logps(model, examples, tok.pad_token_id, cache_dir=cache)
    (entry,) = cache.glob("*.safetensors")
    with safe_open(str(entry), framework="pt") as f:
        meta, values = f.metadata(), f.get_tensor("reference_logps")
    poisoned = values.clone()
    poisoned[:, 1] -= 50.0  # rejected answers look far less likely to the reference: a forged DPO margin
    meta["sha256"] = hashlib.sha256(poisoned.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()
    save_file({"reference_logps": poisoned}, str(entry), metadata=meta)
    again, hit = reference.cached_reference_logps(model, examples, tok.pad_token_id, cache_dir=cache)
    assert not hit
    torch.testing.assert_close(again, truth, rtol=0, atol=0)


def test_an_entry_written_under_another_users_key_is_not_trusted(tmp_path, monkeypatch):
    from podium import cache_auth

    model, tok = build_tiny_model(seed=0, **TINY)
    examples, _ = tokenize_pairs(PAIRS, tok, 64)
    cache = tmp_path / "shared-cache"
    reference.cached_reference_logps(model, examples, tok.pad_token_id, cache_dir=cache)
    monkeypatch.setenv(cache_auth.KEY_ENV, str(tmp_path / "other-user" / "cache.key"))
    _, hit = reference.cached_reference_logps(model, examples, tok.pad_token_id, cache_dir=cache)
    assert not hit  # the other user's entry is recomputed (and rewritten under this key)
    _, hit = reference.cached_reference_logps(model, examples, tok.pad_token_id, cache_dir=cache)
    assert hit


def test_a_key_file_others_can_read_is_not_used(tmp_path, monkeypatch, caplog):
    from podium import cache_auth

    key = tmp_path / "loose.key"
    key.write_bytes(os.urandom(cache_auth.KEY_BYTES))
    key.chmod(0o644)
    monkeypatch.setenv(cache_auth.KEY_ENV, str(key))
    assert cache_auth.sign("entry") == "" and not cache_auth.verify(cache_auth.sign("entry"), "entry")
    assert "chmod 600" in caplog.text


class FileConfig(StageConfig):
    path: FileRef  # a local file or folder this stage reads: the pipeline fingerprints it (podium.refs)


@stage("test_reads", FileConfig, outputs={"out": "out.json"})
def reads_stage(cfg, ctx):
    CALLS.append(ctx.name)
    (ctx.out_dir / "out.json").write_text(json.dumps({"read": str(cfg.path)}))
    return {}


def recipe(tmp_path, path) -> str:
    p = tmp_path / "r.yaml"
    p.write_text(f"stages:\n  - {{name: base, kind: tiny_model}}\n  - {{name: reads, kind: test_reads, path: {path}}}\n")
    return str(p)


def statuses(r, run) -> dict[str, str]:
    return {s.name: s.status for s in make_plan(r, output=str(run)).stages}


@pytest.mark.parametrize("damage", ["truncate", "same-size edit", "remove"])
def test_a_finished_stage_whose_output_changed_runs_again(tmp_path, caplog, damage):
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "a"}\n')
    r, run = recipe(tmp_path, data), tmp_path / "run"
    run_plan(make_plan(r, output=str(run)))
    weights = run / "base" / "model.safetensors"
    good = weights.read_bytes()
    if damage == "truncate":  # the probe: a truncated model.safetensors in a finished stage
        weights.write_bytes(good[: len(good) // 2])
    elif damage == "same-size edit":
        st = weights.stat()
        weights.write_bytes(good[:-8] + bytes(8))
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored, as `touch -r` does
    else:
        weights.unlink()
    assert statuses(r, run)["base"] == "run"  # old code: cached
    CALLS.clear()
    run_plan(make_plan(r, output=str(run)))
    assert weights.read_bytes() == good  # rebuilt (the tiny model is seeded)
    assert "[base] its output changed since it finished" in caplog.text and "running it again" in caplog.text
    assert statuses(r, run) == {"base": "cached", "reads": "cached"}


@pytest.mark.parametrize("how", ["touch -r", "cp -p"])
def test_an_input_changed_with_the_same_name_size_and_mtime_reruns_its_stage(tmp_path, how):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.jsonl").write_text('{"prompt": "aaaa"}\n')
    r, run = recipe(tmp_path, folder), tmp_path / "run"
    run_plan(make_plan(r, output=str(run)))
    target = folder / "a.jsonl"
    st = target.stat()
    if how == "touch -r":  # rewrite in place, then put the old mtime back
        target.write_text('{"prompt": "bbbb"}\n')
    else:  # copy another file over it, keeping that file's timestamps: a new inode
        other = tmp_path / "other.jsonl"
        other.write_text('{"prompt": "bbbb"}\n')
        shutil.copy2(other, target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    assert statuses(r, run) == {"base": "cached", "reads": "run"}  # old code: both cached


def test_fingerprints_are_remembered_by_inode_size_mtime_and_ctime(tmp_path, monkeypatch):
    from podium import fingerprint

    monkeypatch.setattr(fingerprint, "RACY_SECONDS", 0.0)
    hashed = []
    real = fingerprint._sha256
    monkeypatch.setattr(fingerprint, "_sha256", lambda f: hashed.append(1) or real(f))
    p = tmp_path / "w.bin"
    p.write_bytes(b"x" * 4096)
    first = fingerprint.fingerprint(p)
    fingerprint._memo.clear()  # the on-disk memo answers too
    assert fingerprint.fingerprint(p) == first and len(hashed) == 1
    st = p.stat()
    p.write_bytes(b"y" * 4096)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime; the kernel moved ctime
    assert fingerprint.fingerprint(p) != first and len(hashed) == 2


def test_a_forged_fingerprint_memo_entry_is_ignored(tmp_path, monkeypatch):
    from podium import fingerprint

    monkeypatch.setattr(fingerprint, "RACY_SECONDS", 0.0)
    p = tmp_path / "w.bin"
    p.write_bytes(b"x" * 4096)
    truth = fingerprint.fingerprint(p)
    fingerprint._memo.clear()
    (entry,) = fingerprint.memo_dir().rglob("*.json")
    entry.write_text(json.dumps({**json.loads(entry.read_text()), "digest": "0" * 64}))
    assert fingerprint.fingerprint(p) == truth
