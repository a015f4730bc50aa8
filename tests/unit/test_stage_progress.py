"""`--no-progress` holds for stages run from inside a stage (selfplay's generate and train)."""

from podium.stages import STAGES, StageConfig, StageContext, StageSpec, call_stage, load_all_stages, run_stage


def test_inner_stages_inherit_show_progress(monkeypatch, tmp_path):
    load_all_stages()
    seen = []
    inner = StageSpec("probe_inner", StageConfig, lambda cfg, ctx: seen.append(ctx.show_progress) or {}, {"output": "."})
    outer = StageSpec("probe_outer", StageConfig,
                      lambda cfg, ctx: run_stage("probe_inner", {}, ctx.out_dir / "inner") or {}, {"output": "."})
    monkeypatch.setitem(STAGES, "probe_inner", inner)
    for shown in (False, True):
        call_stage(outer, StageConfig(), StageContext(name="outer", out_dir=tmp_path, show_progress=shown))
    run_stage("probe_inner", {}, tmp_path / "alone")  # a stage run alone shows its bars
    assert seen == [False, True, True]
