"""Exercises in the notebooks: behaviour checks, fall-backs and "predict, then reveal".

An exercise cell holds the student's function, its body between nbgrader's ``### BEGIN
SOLUTION`` / ``### END SOLUTION`` markers; ``python -m tlab student OUT/`` replaces the body with
nbgrader's stub, which raises ``NotImplementedError``. The check cell after it calls
:func:`check` with a behaviour test (``tlab.notebook.exercise_checks``): a test states what a
correct function does, never compares it with tlab's own call of the same function.

- ``NotImplementedError`` anywhere in the test means "not solved yet": :func:`check` says so
  and returns ``False``, so that Run All goes on to the cells below.
- A wrong behaviour (:class:`NotQuite`, or any ``AssertionError``) is printed in red (stderr)
  with what went wrong and a hint, and :func:`check` returns ``False`` too: the cells below
  go on with tlab's implementation. Nothing else is caught (a bug in the student's code shows
  its traceback).
- When grading (the environment variable :data:`GRADING_ENV` set to ``1``, e.g.
  ``TLAB_GRADING=1 nbgrader autograde ...``), both raise :class:`NotQuite` instead: nbgrader
  gives a test cell its points when it runs without an error. The test suite runs the
  solution notebooks that way, so a broken solution fails loudly.
- :func:`use` then hands the cells below the student's function if its check passed, otherwise
  tlab's implementation, and says which.
- :func:`reveal` compares a prediction, made before the numbers were shown, with this run's.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable[..., object])

NOT_SOLVED = "not solved yet"
SOLVED = "solved"
WRONG = "did not pass its check"
#: Exercise name -> how its last check went: :data:`SOLVED`, :data:`NOT_SOLVED` or
#: :data:`WRONG` (filled by :func:`check`, read by :func:`use`).
STATE: dict[str, str] = {}
#: Messages are wrapped at this width: JupyterLab breaks long output lines mid-word.
LINE_WIDTH = 96

#: Set to ``1`` while grading: an unsolved exercise then fails its check cell.
GRADING_ENV = "TLAB_GRADING"


def grading() -> bool:
    """Whether this kernel is being graded (:data:`GRADING_ENV` set to ``1``)."""
    return os.environ.get(GRADING_ENV) == "1"


class NotQuite(AssertionError):
    """A behaviour check failed; the message holds what went wrong and a hint."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows for it: the message, without a traceback through tlab's checks
        (the message is the whole story, and a traceback would push the hint off screen)."""
        return [f"{type(self).__name__}: {self}"]


def expect(condition: object, problem: str) -> None:
    """Inside a behaviour test: fail with ``problem`` unless ``condition`` holds."""
    if not condition:
        raise NotQuite(problem)


def check(name: str, test: Callable[[], str], *, hint: str) -> bool:
    """Run the behaviour ``test`` of exercise ``name`` and print the outcome.

    ``test()`` calls the student's function, raises :class:`NotQuite` (or any
    ``AssertionError``) on a wrong behaviour and returns a one-line description of what it
    verified. Returns ``True`` when solved; ``False`` when the function still raises
    ``NotImplementedError`` (nbgrader's stub) or behaves wrongly (printed with ``hint``);
    while grading (:data:`GRADING_ENV`) those two raise :class:`NotQuite` instead.
    The test runs on a fork of torch's random state.
    """
    try:
        with torch.random.fork_rng():  # a check's random draws leave the notebook's seeds alone
            verified = test()
    except NotImplementedError:
        STATE[name] = NOT_SOLVED
        if grading():
            raise NotQuite(f"{name}: {NOT_SOLVED} (no points while grading)") from None
        print(f"{name}: {NOT_SOLVED}. Write your solution in the cell above and run this again.")
        return False
    except AssertionError as failure:
        STATE[name] = WRONG
        message = f"Not quite ({name}): {failure}\nHint: {hint}"
        if grading():
            raise NotQuite(message) from None
        lines = [*message.splitlines(), "Until this check passes, the cells below use tlab's."]
        print("\n".join(textwrap.fill(line, width=LINE_WIDTH) for line in lines), file=sys.stderr)
        return False
    STATE[name] = SOLVED
    print(textwrap.fill(f"Correct ({name}): {verified}", width=LINE_WIDTH))
    return True


def use(name: str, yours: F, fallback: F, what: str) -> F:
    """The student's function for the cells below if exercise ``name`` passed its check, else
    ``fallback`` (tlab's ``what``), saying which one the cells use."""
    state = STATE.get(name, NOT_SOLVED)
    if state == SOLVED:
        print(f"Exercise {name!r} solved: the cells below use your function, not tlab's {what}.")
        return yours
    print(f"Exercise {name!r} {state}: the cells below use tlab's {what}.")
    return fallback


def reveal(
    name: str,
    prediction: Callable[[], object],
    answer: str,
    *,
    choices: Sequence[str],
    measured: str,
) -> bool | None:
    """Compare the student's ``prediction()`` (one of ``choices``) with this run's ``answer``.

    ``measured`` says what the run measured. Returns ``None`` when no prediction was made (the
    function still raises ``NotImplementedError``, or returns none of ``choices``: said in red,
    and an error while grading), else whether it matched. A wrong prediction is not an error:
    it is what the reveal is for.
    """
    if answer not in choices:
        raise ValueError(f"answer {answer!r} is not one of {list(choices)}")
    try:
        guess = prediction()
    except NotImplementedError:
        print(f"{name}: {NOT_SOLVED} (no prediction made). This run says {answer!r}: {measured}.")
        return None
    if guess not in choices:
        problem = f"{name}: predict one of {list(choices)}, not {guess!r}"
        if grading():
            raise NotQuite(problem)
        print(f"{problem}. This run says {answer!r}: {measured}.", file=sys.stderr)
        return None
    verdict = "your prediction matches" if guess == answer else "this run says otherwise"
    print(f"{name}: you predicted {guess!r}; {verdict}: {answer!r} ({measured}).")
    return guess == answer
