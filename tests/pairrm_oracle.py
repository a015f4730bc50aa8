"""llm-blender 0.0.2 (PairRM's own code) as a test oracle, in a venv of its own (a test helper).

llm-blender 0.0.2 does not import under transformers 5 (it imports `transformers.utils.hub.TRANSFORMERS_CACHE`),
so it runs in a venv built once and cached under $PODIUM_ORACLE_CACHE (default ~/.cache/podium/oracles) with
transformers 4.57.1 and the CPU build of torch 2.13.0 (from the local wheel where one lies, else PyPI's CPU
index: never a CUDA build), in a subprocess. `run_oracle(jobs)` answers a list of jobs (see DRIVER) and skips
the calling test only when the package registry cannot be reached.

The GPM code (general-preference/general-preference-model) is not on PyPI: `run_gpm_code` runs its
`gpm_example_usage.py` definitions from a checkout named by $PODIUM_GPM_CODE in the same venv.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.oracle_venvs import cache_dir, registry_unreachable

TORCH = "torch==2.13.0"
PINS = ["llm-blender==0.0.2", "transformers==4.57.1", "numpy<2.3"]
VENV_NAME = "llm-blender-0.0.2"
PIP = ["-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]

DRIVER = r'''
import json, sys, time, logging, warnings
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
import llm_blender
from llm_blender.blender.blender_utils import RankerDataset

blenders = {}

def blender(path):
    if path not in blenders:
        b = llm_blender.Blender(llm_blender.BlenderConfig(device="cpu", use_tqdm=False))
        b.loadranker(path, device="cpu")
        blenders[path] = b
    return blenders[path]

def full(job):
    """Blender.rank's own steps with batch_size 1 (collator, _full_predict, get_scores_from_cmps), keeping the
    collator's ids and C; with "rank", also the public Blender.rank(return_scores=True, batch_size=1)."""
    from llm_blender.gpt_eval.utils import get_scores_from_cmps
    b = blender(job["pairrm"])
    out = []
    for x, cands in zip(job["inputs"], job["candidates"]):
        batch = b.ranker_collator([RankerDataset([x], [cands])[0]])
        batch = {k: v for k, v in batch.items() if v is not None}
        with torch.no_grad():
            C = b.ranker._full_predict(**batch)["logits"]
        keep = lambda ids, mask: [int(t) for t, m in zip(ids, mask) if m]
        out.append({"C": C[0].tolist(), "scores": get_scores_from_cmps(C.numpy())[0].astype(np.float64).tolist(),
                    "source": keep(batch["source_ids"][0], batch["source_attention_mask"][0]),
                    "candidates": [keep(i, m) for i, m in zip(batch["candidate_ids"][0], batch["candidate_attention_mask"][0])]})
    result = {"prompts": out, "manual_sep": b.ranker_collator.mannually_add_sep_token}
    if job.get("rank"):
        scores = b.rank(job["inputs"], job["candidates"], return_scores=True, batch_size=1, disable_tqdm=True)
        result["rank_scores"] = [np.asarray(s, dtype=np.float64).tolist() for s in scores]
    return result

def collate(job):
    """The collator's ids alone (no forward pass), as Blender.rank builds them with batch_size 1."""
    b = blender(job["pairrm"])
    keep = lambda ids, mask: [int(t) for t, m in zip(ids, mask) if m]
    out = []
    for x, cands in zip(job["inputs"], job["candidates"]):
        batch = b.ranker_collator([RankerDataset([x], [cands])[0]])
        out.append({"source": keep(batch["source_ids"][0], batch["source_attention_mask"][0]),
                    "candidates": [keep(i, m) for i, m in zip(batch["candidate_ids"][0], batch["candidate_attention_mask"][0])]})
    return {"prompts": out}

def compare(job):
    b = blender(job["pairrm"])
    logits = b.compare(job["inputs"], job["a"], job["b"], return_logits=True, mode=job["mode"], batch_size=1,
                       disable_tqdm=True)
    return {"logits": np.asarray(logits, dtype=np.float64).tolist()}

def write_hf(job):
    """pairrm_to_hf.ipynb: DebertaV2PairRM from the backbone's config and tokenizer with the markers, the PairRM
    checkpoint loaded into it, then save_pretrained of model and tokenizer."""
    import safetensors.torch
    from transformers import AutoTokenizer, DebertaV2Config
    from llm_blender.pair_ranker.pairrm import DebertaV2PairRM
    ranker = json.load(open(job["pairrm"] + "/config.json"))
    config = DebertaV2Config.from_pretrained(ranker["model_name"])
    tokenizer = AutoTokenizer.from_pretrained(ranker["model_name"])
    markers = ["<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>"]
    tokenizer.add_tokens(markers)
    config.n_tasks, config.drop_out = 1, 0.05
    config.source_prefix_id, config.cand1_prefix_id, config.cand2_prefix_id, config.cand_prefix_id = (
        tokenizer.convert_tokens_to_ids(m) for m in markers)
    pairrm = DebertaV2PairRM(config)
    pairrm.pretrained_model.resize_token_embeddings(len(tokenizer))
    missing, unexpected = safetensors.torch.load_model(pairrm, job["pairrm"] + "/model.safetensors")
    assert not missing and not unexpected, (missing, unexpected)
    pairrm.save_pretrained(job["out"])
    tokenizer.save_pretrained(job["out"])
    return {"ok": True}

def hf_logits(job):
    """The PairRM-hf model card's usage: DebertaV2PairRM.from_pretrained and its tokenize_pair."""
    from transformers import AutoTokenizer
    from llm_blender.pair_ranker.pairrm import DebertaV2PairRM
    pairrm = DebertaV2PairRM.from_pretrained(job["hf"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(job["hf"])
    ids = []
    max_length = 1224 + 2 * 412
    for x, a, b in zip(job["inputs"], job["a"], job["b"]):
        source_ids = tokenizer.encode("<|source|>" + x, max_length=1224, truncation=True)
        cand_max = (max_length - len(source_ids)) // 2
        ids.append(source_ids + tokenizer.encode("<|candidate1|>" + a, max_length=cand_max, truncation=True)
                   + tokenizer.encode("<|candidate2|>" + b, max_length=cand_max, truncation=True))
    enc = tokenizer.pad({"input_ids": ids}, return_tensors="pt", padding="max_length", max_length=max_length)
    with torch.no_grad():
        logits = pairrm(**enc).logits
    return {"logits": logits.double().tolist()}

def time_rank(job):
    """Wall and CPU seconds of Blender.rank(return_scores=True) over the inputs (best of `repeats`), and its scores."""
    b = blender(job["pairrm"])
    best, cpu, scores = float("inf"), float("inf"), None
    for _ in range(job.get("repeats", 1)):
        t0, c0 = time.perf_counter(), time.process_time()
        scores = b.rank(job["inputs"], job["candidates"], return_scores=True, batch_size=job["batch_size"],
                        disable_tqdm=True)
        best, cpu = min(best, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return {"seconds": best, "cpu_seconds": cpu, "scores": np.asarray(scores, dtype=np.float64).tolist()}

def tokenize(job):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(job["folder"])
    tok.add_tokens(job.get("add", []))
    return {"ids": [tok.encode(t) for t in job["texts"]], "len": len(tok)}

def gpm(job):
    """The GPM code's gpm_example_usage.py definitions (imports, functions, classes; not its example at the bottom,
    which downloads a model), run from its own file with one substitution for CPU: eager attention instead of
    flash_attention_2. Float32 (bf16=False). Without a prompt head, R is the fixed block matrix of the GPM code's
    scripts/RMs/reward_model.py `generate_high_dim_result` (that file needs deepspeed, so it is written out here)."""
    import ast
    src = open(job["code"] + "/gpm_example_usage.py").read()
    flash = 'config._attn_implementation = "flash_attention_2"'
    assert flash in src, "gpm_example_usage.py changed: no flash_attention_2 line to run it on CPU"
    tree = ast.parse(src.replace(flash, 'config._attn_implementation = "eager"'))
    keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))]
    ns = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "gpm_example_usage.py", "exec"), ns)
    rm = ns["GPMPipeline"](job["model"], device=torch.device("cpu"), bf16=False, tau=job["tau"])
    out = []
    for prompt, responses in zip(job["prompts"], job["responses"]):
        samples = [[{"role": "user", "content": prompt}, {"role": "assistant", "content": r}] for r in responses]
        rewards, prompt_hidden = [], None
        for s in samples:
            if rm.add_prompt_head:
                r, ph = rm([s], return_prompt=True)
                prompt_hidden = ph if prompt_hidden is None else prompt_hidden
            else:
                r = rm([s])
            rewards.append(r)
        k = len(responses)
        T = [[0.0] * k for _ in range(k)]
        for i in range(k):
            for j in range(k):
                if i == j:
                    continue
                if rm.add_prompt_head:
                    v = ns["generate_high_dim_result_with_prompt"](rm.model, rm.value_head_dim, rewards[i], rewards[j],
                                                                  prompt_hidden)
                else:
                    dim = rm.value_head_dim
                    R = torch.zeros(dim, dim, dtype=rewards[i].dtype)
                    for m in range(0, dim, 2):
                        R[m, m + 1], R[m + 1, m] = -1.0, 1.0
                    v = (rewards[i] @ R.T) @ rewards[j].T
                T[i][j] = float(v.reshape(-1)[0]) / rm.tau
        out.append(T)
    return {"tables": out}

OPS = {"full": full, "collate": collate, "compare": compare, "write_hf": write_hf, "hf_logits": hf_logits, "time_rank": time_rank,
       "tokenize": tokenize, "gpm": gpm}
jobs = json.load(sys.stdin)
print("ORACLE" + json.dumps([OPS[j["op"]](j) for j in jobs]))
'''


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), *PIP, *args], capture_output=True, text=True)


def venv_python() -> Path:
    """The oracle venv's python, building the venv first if needed (once; concurrent callers wait).

    The build time is written to BUILD_SECONDS in the venv.
    """
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    python = root / VENV_NAME / "bin" / "python"
    with open(root / f"{VENV_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists():
            return python
        start = time.perf_counter()
        building = root / f"{VENV_NAME}.building"
        shutil.rmtree(building, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
        py = building / "bin" / "python"
        # The CPU build: a local wheel (pip's find-links), else PyPI's CPU index; PyPI's default torch is a CUDA build.
        res = _pip(py, "--no-index", TORCH)
        if res.returncode != 0:
            res = _pip(py, TORCH, "--index-url", "https://download.pytorch.org/whl/cpu")
        if res.returncode == 0:
            res = _pip(py, *PINS)
        if res.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            reason = registry_unreachable(root / "probe", "llm-blender==0.0.2")
            if reason:
                pytest.skip(f"llm-blender oracle: the package registry is unreachable ({reason})")
            raise RuntimeError(f"building the llm-blender 0.0.2 venv failed:\n{res.stderr[-3000:]}")
        (building / "BUILD_SECONDS").write_text(f"{time.perf_counter() - start:.1f}\n")
        os.replace(building, root / VENV_NAME)
        return python


def run_oracle(jobs: list[dict], threads: int = 1) -> list[dict]:
    """Answer each job ({"op": full | collate | compare | write_hf | hf_logits | time_rank | tokenize | gpm, ...})."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(threads)}
    res = subprocess.run([str(venv_python()), "-c", DRIVER, str(threads)], input=json.dumps(jobs), capture_output=True,
                         text=True, env=env)
    line = next((s for s in res.stdout.splitlines() if s.startswith("ORACLE")), None)
    if res.returncode != 0 or line is None:
        raise RuntimeError(f"llm-blender oracle failed:\n{res.stderr[-4000:]}")
    return json.loads(line[len("ORACLE"):])
