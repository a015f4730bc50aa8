"""Which engine samples, and how it is parallelised: settings shared by `generate`, `sgd` and `selfplay`.

    backend: vllm
    tensor_parallel_size: 4      # GPUs per vLLM engine
    data_parallel_size: 2        # engines; under a launch: num_processes / tensor_parallel_size

The transformers backend runs one model per process: inside a distributed stage (`launch:`,
podium.distributed) prompt i is sampled on rank i % world. With vLLM, `tensor_parallel_size`
consecutive ranks form one engine (a data-parallel replica) and prompt i goes to replica
i % data_parallel_size. Either way each sample is seeded by (seed, prompt index, sample index), so
the samples do not depend on how many processes drew them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from podium.config import invalid
from podium.stages import StageConfig


class SamplerBackend(StageConfig):
    backend: Literal["transformers", "vllm"] = "transformers"
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM: GPUs per engine")
    data_parallel_size: int | None = Field(
        None, ge=1, description="vLLM: engines (replicas); default: launch num_processes / tensor_parallel_size, else 1")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM: share of each GPU the engine may take")

    @model_validator(mode="after")
    def _vllm_settings(self):
        if self.backend != "vllm":
            for key in ("tensor_parallel_size", "data_parallel_size"):
                if (getattr(self, key) or 1) > 1:
                    raise invalid((key,), f"{key} is a setting of backend: vllm (this stage samples with "
                                  f"{self.backend})", getattr(self, key))
        return self

    def backend_settings(self) -> dict:
        """The settings to hand to a `generate` stage run inside this one."""
        return {"backend": self.backend, "tensor_parallel_size": self.tensor_parallel_size,
                "data_parallel_size": self.data_parallel_size, "gpu_memory_utilization": self.gpu_memory_utilization}

    def launch_problem(self, processes: int, sharded: bool = False) -> str | None:
        """Why a launch of `processes` processes cannot run this stage's sampling (None: it can).

        `sharded`: the launch is FSDP or DeepSpeed ZeRO-3, under which a model transformers loads is
        partitioned (or whole on rank 0 only) and cannot sample on its own: sampling needs vLLM there.
        """
        if self.backend != "vllm":
            if sharded:
                return ("sampling under an FSDP / DeepSpeed ZeRO-3 launch needs backend: vllm (a model "
                        "transformers loads there is sharded and cannot sample alone)")
            return None
        tp, dp = self.tensor_parallel_size, self.data_parallel_size
        if processes == 1:
            if dp and dp > 1:
                return (f"data_parallel_size {dp} needs a launch of data_parallel_size x tensor_parallel_size = "
                        f"{dp * tp} processes (launch: {{num_processes: {dp * tp}}})")
            return None
        if processes % tp:
            return f"launch: num_processes ({processes}) must be a multiple of tensor_parallel_size ({tp})"
        if dp is not None and dp != processes // tp:
            return (f"data_parallel_size {dp} x tensor_parallel_size {tp} != launch num_processes {processes}; "
                    "leave data_parallel_size out to take num_processes / tensor_parallel_size")
        return None
