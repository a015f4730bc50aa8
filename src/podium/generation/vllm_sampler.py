"""vLLM backend (GPU, optional): the same `generate` interface as the transformers sampler.

`vllm` is imported only when a VLLMSampler is built, so podium installs and runs
without it (`pip install podium[gpu]`).

Differences from the transformers backend, stated so nobody is surprised:
- Reproducibility comes from vLLM's per-request seed (`seed` + the prompt's index in the whole
  prompt list, so a shard of the prompts samples what the whole list would); samples of one
  prompt share that request. Outputs are reproducible for the same settings on the same GPU,
  but do not match the transformers backend token for token.
- Parallelism: `tensor_parallel_size` GPUs per engine. Inside a distributed stage (`launch:`,
  podium.distributed) the engine joins the ranks the launcher started (vLLM's
  `external_launcher` executor, as TRL's colocated mode): each group of `tensor_parallel_size`
  consecutive ranks is one data-parallel replica and samples its own shard of the prompts.
- Log-probs are vLLM's `logprobs=0` values for the sampled tokens. vLLM >= 0.10 (V1
  engine) returns the raw model log-probs, i.e. temperature 1 and no top-k/top-p
  filtering, which is what the transformers backend records; older V0 engines
  returned them after temperature scaling.
"""

from __future__ import annotations

import gc

import torch

from podium.errors import PodiumError
from podium.generation.sampler import Completion, Prompt, SamplingParams, encode_prompts
from podium.models.folder_checks import check_weights_format


class VLLMSampler:
    """Sample with a vLLM engine loaded from a local folder or Hub id (safetensors, no remote code)."""

    backend = "vllm"

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        progress: bool = False,
        external_launcher: bool = False,
        seed: int = 0,
    ):
        try:
            from vllm import LLM  # optional extra (podium[gpu]), GPU only
        except ImportError:
            raise PodiumError(
                "backend 'vllm' needs the vllm package (pip install 'podium[gpu]'); "
                "use backend: transformers on machines without it"
            ) from None
        check_weights_format(model)
        self.llm = LLM(
            model=str(model),
            dtype=dtype,
            trust_remote_code=False,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size,
            # Under accelerate launch every rank of a tensor-parallel group runs this same engine.
            **({"distributed_executor_backend": "external_launcher", "seed": seed} if external_launcher else {}),
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.progress = progress

    def generate(
        self, prompts: list[Prompt], n: int, params: SamplingParams, seed: int = 0, indices: list[int] | None = None
    ) -> list[list[Completion]]:
        """`n` completions for each prompt, in prompt order; see `podium.generation.sampler` (`indices` too)."""
        seed_index = list(range(len(prompts))) if indices is None else list(indices)
        from vllm import SamplingParams as VSamplingParams  # optional extra, see __init__

        prompt_ids = encode_prompts(self.tokenizer, prompts)
        requests = [{"prompt_token_ids": ids} for ids in prompt_ids]
        per_request = [
            VSamplingParams(
                n=n,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else -1,
                max_tokens=params.max_new_tokens,
                seed=seed + seed_index[i],
                logprobs=0,
                skip_special_tokens=True,
            )
            for i in range(len(prompts))
        ]
        outputs = self.llm.generate(requests, per_request, use_tqdm=self.progress)
        results = []
        for out in outputs:
            row = []
            for o in sorted(out.outputs, key=lambda o: o.index):
                token_ids = list(o.token_ids)
                chosen = [step[t].logprob for step, t in zip(o.logprobs or [], token_ids)]
                row.append(
                    Completion(
                        text=o.text,
                        token_ids=token_ids,
                        logp_sum=float(sum(chosen)),
                        num_tokens=len(token_ids),
                        finish_reason="stop" if o.finish_reason == "stop" else "length",
                    )
                )
            results.append(row)
        return results

    def close(self) -> None:
        """Free the engine's GPU memory (a self-play stage trains on the same GPUs next)."""
        self.llm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
