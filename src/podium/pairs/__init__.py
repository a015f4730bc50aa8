"""podium.pairs: preference pairs built from datasets (Smaug's low-edit-distance pairs) and the `pairs` stage."""
