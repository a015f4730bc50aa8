"""podium.generation: samplers (transformers backend on CPU/GPU, vLLM backend on GPU) and the `generate` stage."""

from podium.generation.sampler import Completion, Sampler, SamplingParams, encode_prompts, render_prompt

__all__ = ["Completion", "Sampler", "SamplingParams", "encode_prompts", "render_prompt"]
