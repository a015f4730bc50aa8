import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny model + tokenizer saved like a Hub folder (safetensors)."""
    from podium.models.io import save_model
    from podium.models.tiny import build_tiny_model

    model, tok = build_tiny_model(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, seed=0)
    path = tmp_path_factory.mktemp("tiny") / "model"
    save_model(model, tok, path)
    return path


@pytest.fixture(scope="session")
def hub_data(tmp_path_factory):
    """{Hub id: local folder} of every dataset the full-scale recipes name, in its published schema (tests/hub_fixtures.py)."""
    from tests.hub_fixtures import build_hub_fixtures

    return build_hub_fixtures(tmp_path_factory.mktemp("hub"))
