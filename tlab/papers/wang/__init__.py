"""Recipes shared by notebooks 09-11 (Wang et al., USENIX Security 2018): models and cached runs.

The three Wang notebooks study one lab setting, so that an attack crafted in notebook 09 is the
attack notebook 11 defends against:

- the **teacher** is a public model trained on the large "general" domain ``letters`` (26
  classes; Wang et al. used VGG-Face or ImageNet models, Sec. 4.1). In the lab it is a narrow
  VGG-style network (``NARROW_VGG``, 5 stages: 4 convolution stages and one FC stage), small
  enough to train on a CPU in seconds. At the ``paper`` preset it is torchvision's ImageNet
  ResNet-18, adapted to the lab's 32-pixel letters (this needs its weights in the torch hub
  cache; see :class:`~tlab.errors.WeightsUnavailableError`);
- **students** learn the target domain ``digits`` (10 classes, a few hundred images) from a copy
  of the teacher whose first K stages are frozen (Sec. 2.1): ``deep`` (K = N-1, only the new
  classifier trains), ``mid`` (K = N-2, a middle stage: the FC stage trains too) and ``full``
  (K = 0, everything is fine-tuned). tlab's "layer K" is the output of stage K, and Wang's
  layer N-1 is ``num_stages``.

Expensive results are cached on disk: the crafted images as safetensors (:func:`crafted`),
success tables and fingerprints as JSON through :func:`tlab.cache.cached_result`. A warm
notebook and every widget re-render read them back in milliseconds.

One deliberate departure from the paper, stated in the notebooks: Wang et al. ran 2,000
Adadelta steps at learning rate 1 per image pair on a GPU. A classroom CPU affords a few hundred,
so the lab's other presets use learning rate ``ATTACK_LR = 10`` (Adadelta's first
steps are tiny, about ``sqrt(eps)``, and a larger rate shortens that warm-up); notebook 09 shows
both rates' progress. The ``paper`` preset uses the paper's rate 1 and, as the authors' code,
rounds crafted images and fingerprints to whole 8-bit pixel values (``Setup.attack``).
"""

from __future__ import annotations

from tlab.attacks.perturbation import check_budget
from tlab.papers.wang import verdicts
from tlab.papers.wang.crafting import attack_pairs, crafted, crafted_untargeted
from tlab.papers.wang.defending import (
    below_k_series,
    below_k_table,
    dropout_table,
    ensemble_table,
    feature_scale,
    lab_training_set,
    neuron_distance_table,
)
from tlab.papers.wang.figures import defences_figure, gini_heatmap, layer_figure
from tlab.papers.wang.fingerprinting import (
    CANDIDATES,
    candidate_specs,
    candidate_student_specs,
    fingerprint_set,
    fingerprint_table,
)
from tlab.papers.wang.lab import (
    ATTACK_LR,
    NARROW_VGG,
    PRESETS,
    STUDENT_DOMAIN,
    STUDENT_KINDS,
    TEACHER_DOMAIN,
    Lab,
    MimicrySettings,
    SeedLab,
    Setup,
    check_layer,
    check_student,
    frozen_layer,
    num_stages,
    setup,
    student_spec,
    teacher_spec,
)
from tlab.papers.wang.tables import (
    convergence,
    pair_gallery,
    pgd_transfer_table,
    targeted_table,
    untargeted_table,
)

__all__ = [
    "ATTACK_LR",
    "CANDIDATES",
    "NARROW_VGG",
    "PRESETS",
    "STUDENT_DOMAIN",
    "STUDENT_KINDS",
    "TEACHER_DOMAIN",
    "Lab",
    "MimicrySettings",
    "SeedLab",
    "Setup",
    "attack_pairs",
    "below_k_series",
    "below_k_table",
    "candidate_specs",
    "candidate_student_specs",
    "check_budget",
    "check_layer",
    "check_student",
    "convergence",
    "crafted",
    "crafted_untargeted",
    "defences_figure",
    "dropout_table",
    "ensemble_table",
    "feature_scale",
    "fingerprint_set",
    "fingerprint_table",
    "frozen_layer",
    "gini_heatmap",
    "lab_training_set",
    "layer_figure",
    "neuron_distance_table",
    "num_stages",
    "pair_gallery",
    "pgd_transfer_table",
    "setup",
    "student_spec",
    "targeted_table",
    "teacher_spec",
    "untargeted_table",
    "verdicts",
]
