"""Resuming a training stage never unpickles anything from the run dir (issue 13, item 4).

The probe: accelerate's `load_state` read `custom_checkpoint_0.pkl` (the scheduler) with
`weights_only=False`, so a pickle planted in a shared run dir ran code on resume.
"""

from __future__ import annotations

import pytest
import torch
from tests.loop_helpers import crash_after, tiny_run
from tests.security.planting import PICKLE_NAMES, plant_pickles


# The probe's file alone (old code: the marker appears), then every pickle name accelerate or HF use.
@pytest.mark.parametrize("names,existing", [(("custom_checkpoint_0.pkl",), False), (PICKLE_NAMES, True)],
                         ids=["probe", "all"])
def test_planted_pickles_in_a_checkpoint_do_not_run(tmp_path, names, existing):
    out, marker = tmp_path / "sft", tmp_path / "PWNED"
    with pytest.raises(KeyboardInterrupt):
        tiny_run(out, objective=crash_after(3), save_steps=2, max_steps=4)  # dies in step 3
    ckpt = out / "checkpoints" / "step-2"
    assert ckpt.is_dir()
    plant_pickles(ckpt, marker, names, existing)

    resumed = tiny_run(out, save_steps=2, max_steps=4)
    assert not marker.exists(), "a pickle in the checkpoint folder was executed"
    straight = tiny_run(tmp_path / "straight", save_steps=2, max_steps=4)
    for (name, a), (_, b) in zip(resumed.named_parameters(), straight.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_checkpoint_holds_no_pickle(tmp_path):
    out = tmp_path / "sft"
    with pytest.raises(KeyboardInterrupt):
        tiny_run(out, objective=crash_after(3), save_steps=2, max_steps=4)
    files = sorted(p.name for p in (out / "checkpoints" / "step-2").iterdir())
    assert all(f.endswith((".safetensors", ".json")) for f in files), files
