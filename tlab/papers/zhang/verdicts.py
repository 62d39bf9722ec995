"""Zhang et al. (KDD 2020): the claims of notebooks 03-06 (Z1-Z6), each a seed-paired
verdict computed from the cached evaluations of :class:`tlab.papers.zhang.lab.Lab`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from tlab.errors import TlabError
from tlab.papers.claims import Claim, paired_claim
from tlab.papers.zhang.ablations import gains, pick, variant_order
from tlab.papers.zhang.lab import Lab
from tlab.papers.zhang.setup import RELIABLE_WB, Setup, role_label


def ft_name(setup: Setup, frozen: int) -> str:
    """How claims name FT at ``frozen``: with "frozen stages in train mode" when the setup runs
    them as the authors' code does, so that notebook 03's comparison of the two modes records
    two claims, not one overwriting the other."""
    name = role_label("FT", frozen)
    return f"{name}, frozen stages in train mode" if setup.ft_frozen_train_mode and frozen else name


def claims(lab: Lab, codes: Sequence[str] = ("Z1", "Z2", "Z3", "Z4", "Z6")) -> list[Claim]:
    """The claims of Zhang et al. that one setup can test, verdicts computed from its numbers.

    Every claim compares seed-paired numbers (same seed = same subsets, same A) with
    :func:`tlab.papers.claims.paired_claim`'s rule, for each FT depth of ``setup.frozen``. The large
    eps is the largest of the grid; Z2 and Z4 are tested at every eps >= 4/255 (Z4's "gamma < 0"
    part is reported in the measured text). Z5 needs several n_B: see :func:`z5_claims`.
    """
    s = lab.setup
    seeds = list(s.seeds)
    big = [e for e in s.eps_grid if e >= 4 / 255 - 1e-9] or [max(s.eps_grid)]
    lo, hi = min(s.eps_grid), max(s.eps_grid)
    scratch = functools.partial(lab.across_seeds, "Scratch")
    out: list[Claim] = []
    for k in s.frozen:
        ft = functools.partial(lab.across_seeds, "FT", frozen=k)
        name = ft_name(s, k)
        if "Z1" in codes:
            out.append(
                paired_claim(
                    "Z1",
                    f"{name} clean accuracy > Scratch (n_B = {s.n_b})",
                    ft("clean"),
                    scratch("clean"),
                    what="clean accuracy",
                    seeds=seeds,
                )
            )
        if "Z2" in codes:
            for eps in big:
                out.append(
                    paired_claim(
                        "Z2",
                        f"{name} white-box FGSM accuracy > Scratch at eps {eps * 255:g}/255",
                        ft("wb", eps),
                        scratch("wb", eps),
                        what="white-box accuracy",
                        seeds=seeds,
                    )
                )
            if hi > lo:
                out.append(
                    paired_claim(
                        "Z2",
                        f"{name}'s white-box advantage over Scratch grows with eps "
                        f"(eps {hi * 255:g}/255 vs {lo * 255:g}/255; "
                        "Sec. 5.1: more so at large eps)",
                        _gap(ft, scratch, hi),
                        _gap(ft, scratch, lo),
                        what="FT - Scratch white-box accuracy",
                        seeds=seeds,
                    )
                )
        if "Z3" in codes:
            out.append(_drop_claim(lab, "FT", k, lo, hi))
        if "Z4" in codes:
            for eps in big:
                out.append(_gamma_claim(lab, "FT", k, eps))
        if "Z6" in codes:
            out.append(
                paired_claim(
                    "Z6",
                    f"{name} has smaller input-gradient norms than Scratch (mean over B's test)",
                    _mean_norms(lab, "Scratch"),
                    _mean_norms(lab, "FT", k),
                    what="mean ||grad_x loss||_2, Scratch vs FT",
                    seeds=seeds,
                    percent=False,
                )
            )
    if s.common and "Z3" in codes:
        out.append(_drop_claim(lab, "CommonInit", 0, lo, hi))
    if s.common and "Z4" in codes:
        out.extend(_gamma_claim(lab, "CommonInit", 0, eps) for eps in big)
    return out


def _gap(
    ft: Callable[..., list[float]], scratch: Callable[..., list[float]], eps: float
) -> list[float]:
    """Per seed: FT's white-box accuracy minus Scratch's at ``eps``."""
    return [f - r for f, r in zip(ft("wb", eps), scratch("wb", eps), strict=True)]


def _mean_norms(lab: Lab, role: str, frozen: int = 0) -> list[float]:
    return [
        float(np.mean(lab.evaluate(role, seed, frozen)["grad_norms"])) for seed in lab.setup.seeds
    ]


def _drop_claim(lab: Lab, role: str, frozen: int, lo: float, hi: float) -> Claim:
    """Z3: black-box accuracy from A falls faster with eps for ``role`` than for Scratch."""

    def drop(r: str, k: int) -> list[float]:
        return [
            a - b
            for a, b in zip(
                lab.across_seeds(r, "bb", lo, k), lab.across_seeds(r, "bb", hi, k), strict=True
            )
        ]

    return paired_claim(
        "Z3",
        f"black-box accuracy (examples from A) of {role_label(role, frozen)} falls faster "
        f"than Scratch's from eps {lo * 255:g} to {hi * 255:g}/255",
        drop(role, frozen),
        drop("Scratch", 0),
        what="fall of black-box accuracy",
        seeds=list(lab.setup.seeds),
    )


def _gamma_claim(lab: Lab, role: str, frozen: int, eps: float) -> Claim:
    """Z4: gamma(role) < gamma(Scratch) at ``eps``; says in how many seeds gamma < 0 (counting
    apart the seeds whose white-box accuracy is below :data:`RELIABLE_WB`)."""
    mine = lab.across_seeds(role, "gamma", eps, frozen)
    theirs = lab.across_seeds("Scratch", "gamma", eps)
    statement = f"gamma of {role_label(role, frozen)} < gamma of Scratch at eps {eps * 255:g}/255"
    undefined = sum(not np.isfinite(g) for g in mine + theirs)
    if undefined:
        return Claim(
            "Z4",
            statement,
            f"gamma undefined in {undefined} case(s): white-box "
            "accuracy 0, nothing left to compare",
            "inconclusive",
            "needs white-box accuracy > 0",
        )
    claim = paired_claim(
        "Z4",
        statement,
        theirs,
        mine,
        what="gamma, Scratch vs this model",
        seeds=list(lab.setup.seeds),
        percent=False,
    )
    white = lab.across_seeds(role, "wb", eps, frozen)
    negative = sum(g < 0 and w >= RELIABLE_WB for g, w in zip(mine, white, strict=True))
    shaky = sum(g < 0 and w < RELIABLE_WB for g, w in zip(mine, white, strict=True))
    note = (
        (
            f" (and {shaky} more where its white-box accuracy is below {RELIABLE_WB:.0%}, "
            "too few images to trust)"
        )
        if shaky
        else ""
    )
    return replace(
        claim, measured=f"{claim.measured}; gamma < 0 in {negative}/{len(mine)} seeds{note}"
    )


def z5_claims(labs: dict[int, Lab], frozen: int = 0) -> list[Claim]:
    """Z5: FT's advantage over Scratch (clean and white-box at the largest eps <= 8/255) is
    larger at the smallest n_B than at the largest (Zhang et al. 2020, Sec. 6.1, Fig. 6).

    ``labs`` maps n_B to a Lab of the same setup with that n_B. Paired by seed.
    """
    if len(labs) < 2:
        raise TlabError("Z5 compares several n_B; give at least two, e.g. n_B = 50 and 500")
    small, large = labs[min(labs)], labs[max(labs)]
    seeds = list(small.setup.seeds)
    grid = small.setup.eps_grid
    eps = max([e for e in grid if e <= 8 / 255 + 1e-9] or [min(grid)])

    def gain(lab: Lab, key: str, at: float | None) -> list[float]:
        return [
            f - r
            for f, r in zip(
                lab.across_seeds("FT", key, at, frozen),
                lab.across_seeds("Scratch", key, at),
                strict=True,
            )
        ]

    out = []
    for key, at, what in (("clean", None, "clean"), ("wb", eps, f"white-box @ {eps * 255:g}/255")):
        out.append(
            paired_claim(
                "Z5",
                f"{role_label('FT', frozen)}'s {what} advantage over Scratch is larger at "
                f"n_B = {min(labs)} than at n_B = {max(labs)}",
                gain(small, key, at),
                gain(large, key, at),
                what=f"FT - Scratch, {what}",
                seeds=seeds,
            )
        )
    return out


# ------------------------------------------------------------------ the ablations' claims (Sec. 6)


def _paired(
    table: pd.DataFrame, ablation: str, eps: int, depth: str, variant: str, metric: str
) -> tuple[list[float], list[int]]:
    g = gains(table, ablation, eps, depth)
    g = g[g["variant"] == variant].sort_values("seed")
    return g[metric].tolist(), g["seed"].tolist()


def _values(
    table: pd.DataFrame, ablation: str, eps: int, variant: str, role: str, depth: str, metric: str
) -> list[float]:
    part = pick(table, ablation, eps)
    rows = part[(part["variant"] == variant) & (part["role"] == role) & (part["depth"] == depth)]
    return rows.sort_values("seed")[metric].tolist()


def _ft_beats_scratch(
    table: pd.DataFrame,
    where: tuple[str, str, str],
    statement: str,
    whats: tuple[str, str],
    *,
    eps: int,
    depth: str,
) -> list[Claim]:
    """FT beats Scratch in clean and in white-box accuracy for one variant, paired by seed.
    ``where`` is (claim code, ablation, variant); ``statement`` has a ``{what}`` slot, filled
    with each of ``whats`` (how the clean and the white-box metric read)."""
    code, ablation, variant = where
    out = []
    for metric, what in zip(("clean", "wb"), whats, strict=True):
        diff, seeds = _paired(table, ablation, eps, depth, variant, metric)
        out.append(
            paired_claim(
                code,
                statement.format(what=what),
                diff,
                [0.0] * len(diff),
                what=f"FT − Scratch, {what}",
                seeds=seeds,
            )
        )
    return out


def ablation_claims(table: pd.DataFrame, eps: int = 8, depth: str = "0") -> list[Claim]:
    """Zhang et al.'s Sec. 6.2-6.4 statements tested on this run's numbers (verdicts computed).

    - Fig. 7: FT beats Scratch (clean, white-box) at the *smallest* n_A, and its clean advantage
      is larger with the largest n_A (more source data, better transfer);
    - Fig. 8: FT from the more similar source (the second source of the list, e.g. grey
      SynDigits) has higher clean and white-box accuracy than FT from the first (the default),
      and its source's examples transfer better (lower gamma);
    - Fig. 9: with the last architecture (the WideResNet), FT beats Scratch in clean and
      white-box accuracy, and black-box accuracy from A is lower for FT than for Scratch.

    Ablations missing from ``table`` are skipped. Seed-paired
    (:func:`tlab.papers.claims.paired_claim`).
    """
    out: list[Claim] = []
    present = set(table["ablation"]) if len(table) else set()
    at = f"{eps}/255"
    beats = functools.partial(_ft_beats_scratch, table, eps=eps, depth=depth)
    if "n_a" in present:
        order = variant_order(table, "n_a")
        small, large = order[0], order[-1]
        statement = f"FT's {{what}} > Scratch's even with a small source ({small})"
        out += beats(("Fig. 7", "n_a", small), statement, ("clean", f"white-box @ {at}"))
        if len(order) > 1:
            d_small, seeds = _paired(table, "n_a", eps, depth, small, "clean")
            d_large, _ = _paired(table, "n_a", eps, depth, large, "clean")
            out.append(
                paired_claim(
                    "Fig. 7",
                    f"FT's clean advantage is larger with {large} than with {small}",
                    d_large,
                    d_small,
                    what="FT − Scratch, clean",
                    seeds=seeds,
                )
            )
    if "source" in present and len(variant_order(table, "source")) > 1:
        default, similar = variant_order(table, "source")[:2]
        seeds = sorted(set(pick(table, "source")["seed"]))
        for metric, what in (("clean", "clean accuracy"), ("wb", f"white-box accuracy @ {at}")):
            out.append(
                paired_claim(
                    "Fig. 8",
                    f"FT from {similar} has higher {what} than FT from {default}",
                    _values(table, "source", eps, similar, "FT", depth, metric),
                    _values(table, "source", eps, default, "FT", depth, metric),
                    what=f"FT {what}, {similar} vs {default}",
                    seeds=seeds,
                )
            )
        out.append(
            paired_claim(
                "Fig. 8",
                f"{similar}'s examples transfer better to its FT than {default}'s "
                f"(lower gamma @ {at})",
                _values(table, "source", eps, default, "FT", depth, "gamma"),
                _values(table, "source", eps, similar, "FT", depth, "gamma"),
                what=f"gamma of FT, {default} vs {similar}",
                seeds=seeds,
                percent=False,
            )
        )
    if "arch" in present:
        arch = variant_order(table, "arch")[-1]
        whats = ("clean accuracy", f"white-box accuracy @ {at}")
        out += beats(("Fig. 9", "arch", arch), f"{arch}: FT's {{what}} > Scratch's", whats)
        diff, seeds = _paired(table, "arch", eps, depth, arch, "bb")
        out.append(
            paired_claim(
                "Fig. 9",
                f"{arch}: A's examples hurt FT more than Scratch (black-box @ {at})",
                [-d for d in diff],
                [0.0] * len(diff),
                what="Scratch − FT, black-box accuracy",
                seeds=seeds,
            )
        )
    return out
