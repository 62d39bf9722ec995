"""Zhang et al. (KDD 2020), Sec. 6: the four ablations of notebook 05, as recipes and tables.

Each ablation changes one thing of a :class:`tlab.papers.zhang.Setup` and compares Scratch with FT:

- ``"n_b"`` -- how many images of B there are (Sec. 6.1, Fig. 6);
- ``"n_a"`` -- how many images of A the source model saw (Sec. 6.2, Fig. 7);
- ``"source"`` -- which domain A is: a more similar one, the default, one with another label set
  (Sec. 6.3, Fig. 8; the paper compares SVHN and USPS as sources for MNIST);
- ``"arch"`` -- DTN against a WideResNet (Sec. 6.4, Fig. 9).

:func:`plan` builds the variants of a preset (a :class:`Variant` is a label plus the Setup it
stands for), :func:`results` evaluates them through :meth:`tlab.papers.zhang.Lab.evaluate`
(trained and scored once, then read from the results cache) into one tidy table; the gain-table
and claim helpers and :func:`tlab.papers.zhang.figures.ablation_figure` only read that table, so
a widget re-renders without touching a model.

Black-box attacks need a source with B's labels: for a source with another label set
(``letters``) FT gets a new classifier, and the table leaves the black-box columns empty (the
source's FGSM would push away from a *letter* class that happens to share the digit's index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tlab.cache import cached_result
from tlab.checks import check_choice
from tlab.core.data import parse_domain
from tlab.errors import TlabError
from tlab.papers import zhang
from tlab.presets import Knob, PresetTable

ABLATIONS: dict[str, str] = {
    "n_b": "n_B, images of B (Sec. 6.1, Fig. 6)",
    "n_a": "n_A, images of A (Sec. 6.2, Fig. 7)",
    "source": "the source domain A (Sec. 6.3, Fig. 8)",
    "arch": "the architecture (Sec. 6.4, Fig. 9)",
}
METRICS: dict[str, str] = {
    "clean": "clean accuracy",
    "wb": "white-box FGSM accuracy",
    "bb": "black-box FGSM accuracy (examples from A)",
    "gamma": "gamma = (BB - WB) / WB",
}
#: Readable names of the sources the presets use.
SOURCE_LABELS = {
    "syndigits": "colour SynDigits",
    "syndigits:colour=false": "grey SynDigits",
    "letters": "letters (26 classes)",
    "svhn:extra=true": "SVHN",
    "usps": "USPS",
    "mnist": "MNIST",
}


@dataclass(frozen=True)
class Variant:
    """One point of an ablation: its label, its place on the x axis and the Setup it runs.

    ``setup.seeds`` are the seeds it is evaluated with and ``setup.frozen`` the FT depths.
    ``a_on_b`` also scores A applied to B unchanged (where FT starts; same label set only).
    """

    ablation: str
    label: str
    position: int
    setup: zhang.Setup
    a_on_b: bool = False


@dataclass(frozen=True)
class Sizes:
    """The values each ablation sweeps at one preset, and its seeds and FT depths."""

    n_b: tuple[int, ...]
    n_a: tuple[int | None, ...]
    sources: tuple[str, ...]
    archs: tuple[str, ...]
    n_b_seeds: tuple[int, ...]
    other_seeds: tuple[int, ...]
    source_n_a: int | None
    source_n_b: int | None
    frozen: dict[str, str]  # ablation -> "0" (full fine-tuning only) or "0,all"


def sizes(preset: str) -> Sizes:
    """What each preset sweeps (``smoke``: tiny, one seed; ``quick``: three n_B, two n_A, two
    sources, one seed; ``standard``: every ablation over 5 seeds, so that each of its claims
    gets a verdict).

    At ``standard`` the WideResNet is WRN-10-1
    (4 stages, like the DTN), the one a CPU trains in about the DTN's time (WRN-16-2 costs about
    4x). ``paper`` is Zhang et al.'s S->M grid (Sec. 6).
    """
    return Sizes(**PRESETS.values(preset))


#: What each preset sweeps in the ablations (the only place that says it).
PRESETS = PresetTable(
    "Zhang et al. 2020, Sec. 6: ablations (notebook 05)",
    {
        "n_b": Knob(
            (50, 100), (50, 100, 200), (50, 100, 200, 500), (50, 100, 200, 500), "sizes of B swept"
        ),
        "n_a": Knob(
            (300, 1000),
            (1000, 2000),
            (500, 1000, 2000),
            (1000, 5000, 10_000, 100_000, 500_000),
            "sizes of A swept",
        ),
        "sources": Knob(
            ("syndigits", "syndigits:colour=false"),
            ("syndigits", "syndigits:colour=false"),
            ("syndigits", "syndigits:colour=false", "letters"),
            ("svhn:extra=true", "usps"),
            "source domains compared",
        ),
        "archs": Knob(
            (),
            (),
            ("dtn", "wrn:depth=10,width=1"),
            ("dtn", "wrn:depth=28,width=10"),
            "architectures compared",
        ),
        "n_b_seeds": Knob((0,), (0,), (0, 1, 2, 3, 4), (0, 1, 2), "seeds of the n_B sweep"),
        "other_seeds": Knob((0,), (0,), (0, 1, 2, 3, 4), (0, 1, 2), "seeds of the other ablations"),
        "source_n_a": Knob(
            300, None, None, 5000, "images of A in the source ablation (None: setup's)"
        ),
        "source_n_b": Knob(
            None, None, None, 600, "images of B in the source ablation (None: setup's)"
        ),
        "frozen": Knob(
            {"n_b": "0", "n_a": "0", "source": "0", "arch": "0"},
            {"n_b": "0", "n_a": "0", "source": "0", "arch": "0"},
            {"n_b": "0", "n_a": "0", "source": "0,all", "arch": "0,all"},
            {"n_b": "0,all", "n_a": "0,all", "source": "0,all", "arch": "0,all"},
            "FT depths per ablation: 0 (fine-tune all), all (only the head trains)",
        ),
    },
)


def base_setup(preset: str) -> zhang.Setup:
    """The setup every ablation varies: the preset's default (``paper``: the S->M task, Sec. 6)."""
    return zhang.setup(preset, task="S->M") if preset == "paper" else zhang.setup(preset)


def parse_arch(text: str) -> tuple[str, dict[str, Any]]:
    """``"wrn:depth=10,width=1"`` -> ``("wrn", {"depth": 10, "width": 1})``."""
    return parse_domain(text)


def arch_label(text: str, options: dict[str, Any] | None = None) -> str:
    """``"WRN-10-1"`` for a WideResNet, the upper-case name otherwise.

    ``text`` is ``"wrn:depth=10,width=1"``, or a bare name with its ``options`` given apart
    (as a Setup stores them: ``arch_label(s.arch, s.arch_options)``).
    """
    name, parsed = parse_arch(text)
    options = {**parsed, **(options or {})}
    if name == "wrn":
        return f"WRN-{options.get('depth', 16)}-{options.get('width', 2)}"
    return name.upper()


def source_label(domain: str) -> str:
    return SOURCE_LABELS.get(domain, domain)


def _depths(setup: zhang.Setup, frozen: str) -> tuple[int, ...]:
    check_choice("frozen", frozen, ("0", "0,all"))
    return (0,) if frozen == "0" else (0, setup.max_frozen)


def plan(
    base: zhang.Setup,
    *,
    n_b: Sequence[int] = (),
    n_a: Sequence[int] = (),
    sources: Sequence[str] = (),
    archs: Sequence[str] = (),
    n_b_seeds: Sequence[int] = (),
    other_seeds: Sequence[int] = (),
) -> dict[str, list[Variant]]:
    """The variants of every ablation; empty arguments take :func:`sizes` of ``base.preset``.

    The n_B sweep runs with ``n_b_seeds`` (claim Z5 pairs them), the others with
    ``other_seeds``. A variant equal to ``base`` reuses the zoo models of notebooks 02-04.
    """
    z = sizes(base.preset)
    seeds_b = tuple(n_b_seeds or z.n_b_seeds)
    seeds_o = tuple(other_seeds or z.other_seeds)
    out: dict[str, list[Variant]] = {name: [] for name in ABLATIONS}
    for i, value in enumerate(sorted(n_b or z.n_b)):
        s = base.with_(n_b=int(value), seeds=seeds_b)
        out["n_b"].append(
            Variant("n_b", f"n_B = {value}", i, s.with_(frozen=_depths(s, z.frozen["n_b"])))
        )
    for i, n_a_value in enumerate(sorted(n_a or z.n_a, key=lambda v: v or 10**9)):
        s = base.with_(n_a=n_a_value, seeds=seeds_o)
        out["n_a"].append(
            Variant(
                "n_a", f"n_A = {n_a_value or 'all'}", i, s.with_(frozen=_depths(s, z.frozen["n_a"]))
            )
        )
    for i, domain in enumerate(sources or z.sources):
        s = base.with_(
            source=domain, seeds=seeds_o, n_a=z.source_n_a or base.n_a, n_b=z.source_n_b or base.n_b
        )
        out["source"].append(
            Variant(
                "source",
                source_label(domain),
                i,
                s.with_(frozen=_depths(s, z.frozen["source"])),
                a_on_b=True,
            )
        )
    for i, text in enumerate(archs if archs else z.archs):
        name, options = parse_arch(text)
        s = base.with_(arch=name, arch_options=options, seeds=seeds_o, frozen=(0,))
        out["arch"].append(
            Variant("arch", arch_label(text), i, s.with_(frozen=_depths(s, z.frozen["arch"])))
        )
    return out


# ---------------------------------------------------------------------------- evaluation


def source_facts(lab: zhang.Lab, seed: int) -> dict[str, Any]:
    """A's accuracy on its own test set and its class names (cached: no model load when warm)."""
    spec = lab.setup.spec("A", seed)

    def compute() -> dict[str, Any]:
        entry = lab.entry("A", seed)
        return {
            "accuracy": float(entry.meta["metrics"]["test_accuracy"]),
            "classes": list(entry.meta["classes"]),
        }

    return cached_result("zhang-ablation-source", {"model": spec.key()}, compute)


def target_classes(lab: zhang.Lab) -> list[str]:
    """B's class names (from the first seed's Scratch model's zoo metadata, cached)."""
    seed = lab.setup.seeds[0]
    spec = lab.setup.spec("Scratch", seed)
    return cached_result(
        "zhang-ablation-classes",
        {"model": spec.key()},
        lambda: list(lab.entry("Scratch", seed).meta["classes"]),
    )


def results(
    variants: Sequence[Variant], *, device: Any = None, progress: bool = False
) -> pd.DataFrame:
    """One row per (variant, seed, model, eps): clean / white-box / black-box accuracy, gamma.

    Models are trained through the zoo and scored with :meth:`tlab.papers.zhang.Lab.evaluate`
    (cached), so a second call only reads JSON files. Columns: ``ablation, variant, position, seed,
    model, role, frozen, depth`` ("0" / "all" / "-"), ``eps`` (x 255), ``clean, wb, bb, gamma``,
    ``source_accuracy`` (A on its own test set), ``same_labels`` (A has B's classes; if not,
    ``bb`` and ``gamma`` are NaN).
    """
    rows: list[dict[str, Any]] = []
    for v in variants:
        lab = zhang.Lab(v.setup, device=device, progress=progress)
        b_classes = target_classes(lab)
        for seed in v.setup.seeds:
            facts = source_facts(lab, seed)
            same = facts["classes"] == b_classes
            models = [("Scratch", 0)] + [("FT", k) for k in v.setup.frozen]
            if v.a_on_b and same:
                models.append(("A on B", 0))
            for role, k in models:
                row = lab.evaluate(role, seed, k)
                depth = ("all" if k == v.setup.max_frozen else str(k)) if role == "FT" else "-"
                for i, eps in enumerate(row["eps"]):
                    rows.append(
                        {
                            "ablation": v.ablation,
                            "variant": v.label,
                            "position": v.position,
                            "seed": seed,
                            "model": zhang.role_label(role, k),
                            "role": role,
                            "frozen": k,
                            "depth": depth,
                            "eps": round(eps * 255),
                            "clean": row["clean"],
                            "wb": row["wb"][i],
                            "bb": row["bb"][i] if same else np.nan,
                            "gamma": row["gamma"][i] if same else np.nan,
                            "source_accuracy": facts["accuracy"],
                            "same_labels": same,
                        }
                    )
    return pd.DataFrame(rows)


def pick(table: pd.DataFrame, ablation: str, eps: int | None = None) -> pd.DataFrame:
    check_choice("ablation", ablation, tuple(ABLATIONS))
    part = table[table["ablation"] == ablation]
    if part.empty:
        raise TlabError(
            f"no results for the {ablation!r} ablation in this run; its list is "
            "empty at this preset (set it in the parameters cell, or use "
            "PRESET = 'standard')"
        )
    if eps is not None:
        if eps not in set(part["eps"]):
            raise TlabError(
                f"eps={eps}/255 was not evaluated; evaluated: {sorted(set(part['eps']))} (x 1/255)"
            )
        part = part[part["eps"] == eps]
    return part


def gains(table: pd.DataFrame, ablation: str, eps: int, depth: str = "0") -> pd.DataFrame:
    """Per variant and seed: FT (``depth``) minus Scratch, paired by seed, at ``eps``/255."""
    part = pick(table, ablation, eps)
    key = ["variant", "position", "seed"]
    ft = part[(part["role"] == "FT") & (part["depth"] == depth)].set_index(key)
    scratch = part[part["role"] == "Scratch"].set_index(key)
    if ft.empty:
        raise TlabError(
            f"FT with frozen={depth} was not evaluated for {ablation!r}; "
            f"evaluated depths: {sorted(set(part['depth']) - {'-'})}"
        )
    cols = ["clean", "wb", "bb", "gamma"]
    return (ft[cols] - scratch.loc[ft.index, cols]).reset_index()


def _mean_std(values: pd.Series, percent: bool) -> str:
    scale = 100 if percent else 1
    v = values.dropna().to_numpy(dtype=float) * scale
    if v.size == 0:
        return "-"
    spread = f" ± {v.std(ddof=1):.1f}" if v.size > 1 else ""
    return f"{v.mean():.1f}{spread}" if percent else f"{v.mean():.2f}{spread}"


def summary_table(table: pd.DataFrame, ablation: str, eps: int, depth: str = "0") -> pd.DataFrame:
    """Readable per-variant table: mean ± std over seeds (in %; gamma as a ratio)."""
    part = pick(table, ablation, eps)
    gain = gains(table, ablation, eps, depth)
    ft_name = f"FT-{depth}"
    out = []
    for (_position, variant), group in part.groupby(["position", "variant"], sort=True):
        ft = group[(group["role"] == "FT") & (group["depth"] == depth)]
        scratch = group[group["role"] == "Scratch"]
        g = gain[gain["variant"] == variant]
        row = {
            "variant": variant,
            "seeds": len(set(group["seed"])),
            "A's own accuracy": _mean_std(scratch["source_accuracy"], True),
        }
        a_on_b = group[group["role"] == "A on B"]
        row["A on B clean"] = _mean_std(a_on_b["clean"], True)
        for col, name in (("clean", "clean"), ("wb", f"WB@{eps}"), ("bb", f"BB@{eps}")):
            row[f"Scratch {name}"] = _mean_std(scratch[col], True)
            row[f"{ft_name} {name}"] = _mean_std(ft[col], True)
            row[f"{ft_name} − Scratch {name}"] = _mean_std(g[col], True)
        row[f"gamma@{eps} Scratch / {ft_name}"] = (
            f"{_mean_std(scratch['gamma'], False)} / {_mean_std(ft['gamma'], False)}"
        )
        out.append(row)
    return pd.DataFrame(out).set_index("variant")


def variant_order(table: pd.DataFrame, ablation: str) -> list[str]:
    part = pick(table, ablation)
    return part.drop_duplicates("variant").sort_values("position")["variant"].tolist()


def record_metrics(table: pd.DataFrame, eps: int = 8) -> dict[str, float]:
    """Flat ``{name: mean over seeds}`` for :func:`tlab.record.record`, e.g.
    ``n_b_50_clean_ft0``, ``source_grey_syndigits_wb8_scratch``."""
    out: dict[str, float] = {}
    part = table[table["eps"] == eps]
    for (ablation, variant, role, depth), rows in part.groupby(
        ["ablation", "variant", "role", "depth"]
    ):
        slug = "_".join("".join(c if c.isalnum() else " " for c in variant.lower()).split())
        slug = slug.removeprefix("n_b_").removeprefix("n_a_")
        who = {"Scratch": "scratch", "A on B": "a_on_b"}.get(role, f"ft{depth}")
        base = f"{ablation}_{slug}"
        out[f"{base}_clean_{who}"] = float(rows["clean"].mean())
        out[f"{base}_wb{eps}_{who}"] = float(rows["wb"].mean())
        if rows["bb"].notna().any():
            out[f"{base}_bb{eps}_{who}"] = float(rows["bb"].mean())
    return out
