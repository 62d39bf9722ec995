"""Attacks: gradient attacks (FGSM, PGD), the mimicry attack, fingerprinting.

``tlab.attacks`` itself offers the gradient attacks' interface (``fgsm``, ``fgsm_budgets`` for
a grid of budgets from one gradient, ``pgd``, and ``make_attack`` / ``list_attacks`` to pick one
by name, and ``attack_copy``: a model rewritten to craft faster, same function); the mimicry
attack and fingerprinting live in :mod:`tlab.attacks.mimicry` and :mod:`tlab.attacks.fingerprint`.
"""

from tlab.attacks._fast.attack_copy import attack_copy
from tlab.attacks.gradient import Attack, fgsm, fgsm_budgets, list_attacks, make_attack, pgd

__all__ = [
    "Attack",
    "attack_copy",
    "fgsm",
    "fgsm_budgets",
    "list_attacks",
    "make_attack",
    "pgd",
]
