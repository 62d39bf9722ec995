"""Model recipes the notebooks share, as zoo specs, per preset.

A notebook asks for a recipe rather than spelling out a spec, so that two notebooks (and
``python -m tlab prepare``) needing the same model hit the same zoo entry.
"""

from __future__ import annotations

from tlab.presets import by_preset
from tlab.train import TrainConfig
from tlab.zoo import ModelSpec

#: Embedded domains with the parameters the notebooks use (generated once, then cached).
EMBEDDED_DOMAINS: dict[str, dict] = {"digits": {}, "syndigits": {}, "letters": {}}


def start_here_spec(preset: str, seed: int = 0) -> ModelSpec:
    """Notebook 00's model: a DTN (Zhang et al. 2020, Sec. 4.3) on scikit-learn's digits."""
    epochs = by_preset(preset, quick=4, standard=20, paper=40)
    return ModelSpec(domain="digits", arch="dtn",
                     train=TrainConfig(epochs=epochs, patience=5, seed=seed, val_fraction=0.15))
