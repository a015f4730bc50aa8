"""Distributed stages: a recipe's `launch:` spec, the `accelerate launch` child that runs a stage on every
rank, and the sharding helpers the stages use inside it.

- `spec`: the `launch:` mapping of a recipe or stage, checked against accelerate's own launch
  arguments and config dataclass; the environment checks (devices, DeepSpeed) made before a run starts.
- `launcher`: the exact `accelerate launch ... -m podium.cli.worker STAGE_DIR` command, the child's
  log streamed, a failed rank's error turned into the stage's error, the completion of every rank.
- `world`: rank and world size inside a stage, barriers, prompt sharding (prompt i on rank i % world)
  and pickle-free gathers.
- `follow`: `podium run` on a node whose `machine_rank` is not 0 (multi-node runs).
"""
