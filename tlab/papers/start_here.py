"""Notebooks 00 and 01: one DTN on scikit-learn's digits, as a zoo spec, per preset.

A notebook asks for a recipe rather than spelling out a spec, so that two notebooks (and
``python -m tlab prepare``) needing the same model hit the same zoo entry.
"""

from __future__ import annotations

from tlab.core.train import TrainConfig
from tlab.core.zoo import ModelSpec
from tlab.presets import Knob, PresetTable

#: Embedded domains with the parameters the notebooks use (generated once, then cached).
EMBEDDED_DOMAINS: dict[str, dict] = {"digits": {}, "syndigits": {}, "letters": {}}

#: What each preset means for notebooks 00 and 01 (the only place that says it).
PRESETS = PresetTable(
    "Notebooks 00-01 (a DTN on digits)",
    {
        "epochs": Knob(4, 20, 20, 40, "epochs of the DTN (early stopping, patience 5)"),
        "gallery_per_class": Knob(3, 6, 6, 6, "images per class in 00's domain galleries"),
        "curve_eps": Knob(
            [0, 2, 4, 8, 16, 32],
            [0, 2, 4, 6, 8, 12, 16, 24, 32],
            [0, 2, 4, 6, 8, 12, 16, 24, 32],
            list(range(0, 33, 2)),
            "FGSM budgets x 255 of 00's accuracy curve",
        ),
        "eval_images": Knob(100, 300, 300, 599, "test digits 01 attacks"),
        "eps_list": Knob(
            [0, 4, 8, 16, 32],
            [0, 2, 4, 6, 8, 12, 16, 24, 32],
            [0, 2, 4, 6, 8, 12, 16, 24, 32],
            list(range(0, 33, 2)),
            "FGSM and PGD budgets x 255 of 01's curves",
        ),
    },
)


def start_here_spec(preset: str, seed: int = 0) -> ModelSpec:
    """Notebook 00's model: a DTN (Zhang et al. 2020, Sec. 4.3) on scikit-learn's digits."""
    epochs = PRESETS.values(preset)["epochs"]
    return ModelSpec(
        domain="digits",
        arch="dtn",
        train=TrainConfig(epochs=epochs, patience=5, seed=seed, val_fraction=0.15),
    )
