"""Behaviour checks of the notebooks' exercises, and tlab's versions the cells fall back to.

Each ``check_*`` states what a correct function *does* (stays in the eps-ball, freezes exactly
k stages, equals a definition on numbers the notebook never shows, ...) and hands the test to
:func:`tlab.notebook.exercises.check`. None compares the student's result with tlab's call of
the same function. The fall-backs (``pgd_attack``, ``davchev_loss``, ``mimicry_loss``, ...) are
tlab's own implementations with the exercise's signature: what :func:`~tlab.notebook.exercises.
use` runs while an exercise is unsolved. One module per paper; notebooks import this package.
"""

from tlab.notebook.exercise_checks.attacks import check_pgd, pgd_attack
from tlab.notebook.exercise_checks.davchev import (
    check_adversarial_loss,
    check_normalise,
    davchev_loss,
)
from tlab.notebook.exercise_checks.runs import check_mean_difference
from tlab.notebook.exercise_checks.wang import (
    check_eot_distance,
    check_find_teacher,
    check_mimicry_loss,
    check_vote,
    eot_distance,
    find_teacher,
    majority_vote,
    mimicry_loss,
)
from tlab.notebook.exercise_checks.zhang import (
    adversarial_accuracy_of,
    check_adversarial_accuracy,
    check_freeze,
    check_gamma,
    check_gradient_norms,
)

__all__ = [
    "adversarial_accuracy_of",
    "check_adversarial_accuracy",
    "check_adversarial_loss",
    "check_eot_distance",
    "check_find_teacher",
    "check_freeze",
    "check_gamma",
    "check_gradient_norms",
    "check_mean_difference",
    "check_mimicry_loss",
    "check_normalise",
    "check_pgd",
    "check_vote",
    "davchev_loss",
    "eot_distance",
    "find_teacher",
    "majority_vote",
    "mimicry_loss",
    "pgd_attack",
]
