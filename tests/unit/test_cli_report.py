"""The terminal summary of a run shows headline metrics, not every logged number."""

from podium.cli.run import headline


def test_headline_picks_known_keys_in_priority_order_and_counts_the_rest():
    metrics = {"iter1/win_rate": 0.4, "win_rate": 0.5565, "accuracy": 0.453, "train_seconds": 12.0, "note": "text"}
    assert headline(metrics) == "accuracy=0.453, win_rate=0.5565 (+2 more)"


def test_headline_caps_the_number_shown():
    metrics = {k: 1.0 for k in ("accuracy", "win_rate", "train_loss", "loss", "pairs", "steps")}
    assert headline(metrics, limit=2) == "accuracy=1, win_rate=1 (+4 more)"


def test_headline_without_known_keys_says_how_many_there_are():
    assert headline({"merge_seconds": 0.1, "num_tensors": 57.0}) == "2 metrics"
    assert headline({}) == ""
