"""Attacks: gradient attacks (FGSM, PGD), the mimicry attack, fingerprinting.

``tlab.attacks`` itself offers the gradient attacks' interface (``fgsm``, ``pgd``, and
``make_attack`` / ``list_attacks`` to pick one by name); the mimicry attack and fingerprinting
live in :mod:`tlab.attacks.mimicry` and :mod:`tlab.attacks.fingerprint`.
"""

from tlab.attacks.gradient import Attack, fgsm, list_attacks, make_attack, pgd

__all__ = ["Attack", "fgsm", "list_attacks", "make_attack", "pgd"]
