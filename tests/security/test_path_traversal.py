"""Path traversal through stage and recipe names (`name: ..`, `name: ../../x`, absolute names).

The place for these probes: they come with the pipeline wave of issue 13 (run-dir lock, rmtree guard,
recipe-name escaping), after the renovation of pipeline.py / cli (issue 12) lands. Each probe should build
a recipe whose name or stage names point outside the output dir, run or plan it, and assert a ConfigError
and that `snapshot()` (tests/security/planting.py) of the folders around the run dir is unchanged.
"""
