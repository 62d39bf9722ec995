"""tlab: a hands-on lab on adversarial attacks against transfer learning.

The package holds what the notebooks share: domains (:mod:`tlab.core.data`), models with a uniform
stage interface (:mod:`tlab.core.models`), training strategies (:mod:`tlab.core.train`), a cache of
trained models (:mod:`tlab.core.zoo`), attacks (:mod:`tlab.attacks.gradient`) and metrics
(:mod:`tlab.core.metrics`).

Papers taught:
- Zhang et al., "Two Sides of the Same Coin: White-box and Black-box Attacks for Transfer
  Learning", KDD 2020.
- Davchev et al., "An Empirical Evaluation of Adversarial Robustness under Transfer Learning",
  ICML 2019 workshop.
- Wang et al., "With Great Training Comes Great Vulnerability: Practical Attacks against
  Transfer Learning", USENIX Security 2018.
"""

__version__ = "0.1.0"
