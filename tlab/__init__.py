"""tlab: a hands-on lab on adversarial attacks against transfer learning.

The package holds what the notebooks share: domains (:mod:`tlab.data`), models with a uniform
stage interface (:mod:`tlab.models`), training strategies (:mod:`tlab.train`), a cache of trained
models (:mod:`tlab.zoo`), attacks (:mod:`tlab.attacks`) and metrics (:mod:`tlab.metrics`).

Papers taught:
- Zhang et al., "Two Sides of the Same Coin: White-box and Black-box Attacks for Transfer
  Learning", KDD 2020.
- Davchev et al., "An Empirical Evaluation of Adversarial Robustness under Transfer Learning",
  ICML 2019 workshop.
- Wang et al., "With Great Training Comes Great Vulnerability: Practical Attacks against
  Transfer Learning", USENIX Security 2018.
"""

__version__ = "0.1.0"
