"""Image generators behind the embedded domains, and the on-disk cache of generated sets.

Everything here works offline from what the installed packages ship: the TrueType fonts bundled
with matplotlib and the 8x8 handwritten digits bundled with scikit-learn. Output is uint8
(N, 3, 32, 32), the storage format of :class:`tlab.core.data.TensorSet`.

The glyph renderer imitates SynDigits (Ganin & Lempitsky, ICML 2015), the synthetic house
numbers Zhang et al. (KDD 2020, Sec. 5.1) use as a digit domain: a centred character with its
neighbours partly visible on the left and right, random font, size, position, rotation,
aspect, blur, colours and sensor noise. Each glyph is drawn once by PIL into an "atlas"; every
image is then produced in batch by an affine warp of atlas entries (``grid_sample``), so a
thousand images cost a few tensor operations instead of a thousand PIL calls.

Generated sets are cached in ``data/embedded/`` (:mod:`tlab.datasets.split_cache`), named by a
hash of their parameters and :data:`GENERATOR_VERSION`.

Determinism: all randomness comes from one ``torch.Generator`` seeded from (seed, split, salt),
and every operation used is deterministic on CPU, so the same arguments give the same bytes.
:data:`GENERATOR_VERSION` names the algorithm; bump it whenever the output changes so cached
sets are regenerated.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from tlab import paths
from tlab.datasets.split_cache import cached_entry
from tlab.safe_files import recipe_hash

GENERATOR_VERSION = 1

DIGIT_CHARS = "0123456789"
LETTER_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# matplotlib's fonts whose digits and capitals are ordinary upright or slanted glyphs. Left out:
# the DejaVu "Display" and STIX "NonUni"/"Siz*" files (no glyphs at these code points), cmsy10
# and cmex10 (math symbols at those code points), cmmi10 (old-style digits that dip below the
# baseline) and LastResortHE (placeholder boxes).
FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmti10.ttf",
    "cmtt10.ttf",
)

SIZE = 32  # output side, pixels
_ATLAS_H, _ATLAS_W = 48, 64  # atlas cell; wide enough for a bold "W" at the reference height
_CAP = 34  # height of a capital "H" (and of most digits) in the atlas, pixels
_CHUNK = 2048  # images warped at once (bounds memory: ~3 x 25 MB of float32)


@dataclass(frozen=True)
class GlyphStyle:
    """Ranges of the random variation (all uniform unless said otherwise)."""

    height: tuple[float, float] = (0.50, 0.85)  # glyph cap height / image height
    aspect: tuple[float, float] = (0.80, 1.25)  # horizontal stretch, log-uniform
    rotation_deg: float = 15.0  # +- this
    shift: float = 0.15  # centre offset, fraction of the half-width
    neighbour_p: float = 0.6  # chance of a neighbour on each side
    spacing: tuple[float, float] = (0.70, 1.00)  # neighbour distance / glyph height
    blur_sigma: tuple[float, float] = (0.0, 1.0)  # Gaussian blur, pixels
    noise_p: float = 0.5  # chance of additive Gaussian noise
    noise_sigma: tuple[float, float] = (0.01, 0.06)
    contrast: float = 0.30  # luminance gap floor, colour images
    gradient: float = 0.15  # background brightness ramp amplitude


def fonts_dir() -> Path:
    """The folder of TrueType fonts that matplotlib ships."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=4)
def glyph_atlas(chars: str) -> torch.Tensor:
    """Coverage masks (fonts, len(chars), 48, 64) in [0, 1], one per font and character.

    Each font is scaled so that its capital H is 34 pixels tall, so characters keep their
    natural relative widths and heights within a font; each glyph's ink box is centred.
    """
    folder = fonts_dir()
    atlas = np.zeros((len(FONT_FILES), len(chars), _ATLAS_H, _ATLAS_W), dtype=np.float32)
    for f, name in enumerate(FONT_FILES):
        probe = ImageFont.truetype(str(folder / name), 100)
        _, top, _, bottom = probe.getbbox("H")
        font = ImageFont.truetype(str(folder / name), max(1, round(100 * _CAP / (bottom - top))))
        for c, ch in enumerate(chars):
            canvas = Image.new("L", (4 * _ATLAS_W, 4 * _ATLAS_H), 0)
            ImageDraw.Draw(canvas).text(
                (2 * _ATLAS_W, 2 * _ATLAS_H), ch, font=font, fill=255, anchor="mm"
            )
            ink = canvas.crop(canvas.getbbox())
            w, h = min(ink.width, _ATLAS_W), min(ink.height, _ATLAS_H)
            x0, y0 = (ink.width - w) // 2, (ink.height - h) // 2
            mask = np.asarray(ink.crop((x0, y0, x0 + w, y0 + h)), dtype=np.float32) / 255.0
            top_px, left_px = (_ATLAS_H - h) // 2, (_ATLAS_W - w) // 2
            atlas[f, c, top_px : top_px + h, left_px : left_px + w] = mask
    return torch.from_numpy(atlas)


def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _placement(
    centre: torch.Tensor, zoom: torch.Tensor, stretch: torch.Tensor, angle: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine map from output to atlas coordinates, as grid_sample wants it.

    Output pixel u (relative to the image centre) samples atlas pixel
    v = R(-angle) (u - centre) / (zoom * [stretch, 1]). In normalised coordinates (the output
    spans 16 px per unit, the atlas 32 x 24) that is ``linear @ o + offset``; returns both,
    (n, 2, 2) and (n, 2).
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    inv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    inv = inv / zoom[:, None, None]
    inv[:, 0, :] /= stretch[:, None]
    to_norm = torch.tensor([1 / (_ATLAS_W / 2), 1 / (_ATLAS_H / 2)], dtype=inv.dtype)
    linear = to_norm[None, :, None] * inv * (SIZE / 2)
    offset = -(to_norm[None, :] * (inv @ centre[:, :, None]).squeeze(-1))
    return linear, offset


def _sample(glyphs: torch.Tensor, base_grid: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Warp atlas cells (n, 48, 64) into (n, 1, 32, 32) coverage masks."""
    grid = base_grid + offset[:, None, None, :].float()
    return F.grid_sample(
        glyphs[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable 5-tap Gaussian blur of (m, 1, 32, 32) masks, one sigma per image."""
    taps = torch.arange(-2, 3, dtype=torch.float64)
    w = torch.exp(-(taps[None, :] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    w = (w / w.sum(1, keepdim=True)).float()
    m = x.shape[0]
    y = F.pad(x.reshape(1, m, SIZE, SIZE), (2, 2, 2, 2), mode="replicate")
    y = F.conv2d(y, w.view(m, 1, 5, 1), groups=m)
    return F.conv2d(y, w.view(m, 1, 1, 5), groups=m).view(m, 1, SIZE, SIZE)


def _luminance(rgb: torch.Tensor) -> torch.Tensor:
    return rgb @ torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype)


def _colours(
    g: torch.Generator, n: int, colour: bool, style: GlyphStyle
) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground and background colours (n, 3), or grey levels (n, 1) light on dark.

    Colour images: among 16 candidate foregrounds the first whose luminance differs from the
    background's by at least ``style.contrast`` is kept (black or white if none does).
    """
    if not colour:
        return _uniform(g, n, 0.65, 1.0)[:, None], _uniform(g, n, 0.0, 0.30)[:, None]
    bg = torch.rand(n, 3, generator=g, dtype=torch.float64)
    candidates = torch.rand(n, 16, 3, generator=g, dtype=torch.float64)
    ok = (_luminance(candidates) - _luminance(bg)[:, None]).abs() >= style.contrast
    pick = ok.to(torch.int8).argmax(1)
    fg = candidates[torch.arange(n), pick]
    fallback = (_luminance(bg) < 0.5).to(torch.float64)[:, None].expand(n, 3)
    fg = torch.where(ok.any(1)[:, None], fg, fallback)
    return fg, bg


def render_glyphs(
    chars: str, n: int, *, seed: int, colour: bool, style: GlyphStyle = GlyphStyle()
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (uint8, (n, 3, 32, 32)) of the characters ``chars`` and their labels.

    Labels are balanced: class c appears ``n // len(chars)`` or one more times, in random
    order. ``colour=False`` gives grey light-on-dark images (like MNIST) repeated to 3 channels.
    """
    g = torch.Generator().manual_seed(seed)
    k = len(chars)
    atlas = glyph_atlas(chars)
    cells = atlas.flatten(0, 1)  # (fonts * k, 48, 64); cell of (font f, char c) = f * k + c
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
    font_base = torch.randint(0, atlas.shape[0], (n,), generator=g) * k  # first cell of the font
    left_char = torch.randint(0, k, (n,), generator=g)
    right_char = torch.randint(0, k, (n,), generator=g)
    height = _uniform(g, n, *style.height)
    zoom = height * SIZE / _CAP
    stretch = torch.exp(_uniform(g, n, math.log(style.aspect[0]), math.log(style.aspect[1])))
    angle = _uniform(g, n, -1, 1) * math.radians(style.rotation_deg)
    centre = (torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1) * style.shift * SIZE / 2
    spacing = _uniform(g, n, *style.spacing) * height * SIZE
    sides = (torch.rand(n, 2, generator=g) < style.neighbour_p).float()
    sigma = _uniform(g, n, *style.blur_sigma)
    fg, bg = _colours(g, n, colour, style)
    ramp_angle = _uniform(g, n, 0, 2 * math.pi)
    ramp = _uniform(g, n, -style.gradient, style.gradient)
    noise_sigma = _uniform(g, n, *style.noise_sigma) * (torch.rand(n, generator=g) < style.noise_p)

    axis = torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    linear, offset = _placement(centre, zoom, stretch, angle)
    _, step_right = _placement(centre + spacing[:, None] * axis, zoom, stretch, angle)
    step = step_right - offset  # offset change that moves a glyph one neighbour right
    # pixel centres in normalised output coordinates, (32, 32, 2) as (x, y)
    coords = (torch.arange(SIZE, dtype=torch.float32) - (SIZE - 1) / 2) / (SIZE / 2)
    pixel_xy = torch.stack(torch.meshgrid(coords, coords, indexing="xy"), -1)
    out = torch.empty(n, 3, SIZE, SIZE, dtype=torch.uint8)
    for lo in range(0, n, _CHUNK):
        s = slice(lo, min(n, lo + _CHUNK))
        base = torch.einsum("nij,hwj->nhwi", linear[s].float(), pixel_xy)
        mask = _sample(cells.index_select(0, font_base[s] + labels[s]), base, offset[s])
        for side, chars_s, sign in ((0, left_char, -1.0), (1, right_char, 1.0)):
            neighbour = _sample(
                cells.index_select(0, font_base[s] + chars_s[s]), base, offset[s] + sign * step[s]
            )
            mask = torch.maximum(mask, neighbour * sides[s, side, None, None, None])
        mask = _blur(mask, sigma[s])
        ramp_xy = torch.stack([torch.cos(ramp_angle[s]), torch.sin(ramp_angle[s])], -1)
        back = (
            bg[s].float()[:, :, None, None]
            + (ramp[s].float()[:, None, None] * (pixel_xy @ ramp_xy.float().T).permute(2, 0, 1))[
                :, None
            ]
        )
        img = torch.lerp(back, fg[s].float()[:, :, None, None], mask)
        noisy = noise_sigma[s].nonzero().squeeze(1)
        img[noisy] += noise_sigma[s][noisy, None, None, None].float() * torch.randn(
            (len(noisy), *img.shape[1:]), generator=g
        )
        out[s] = img.clamp_(0, 1).mul_(255).round_().to(torch.uint8).expand(-1, 3, -1, -1)
    return out, labels.to(torch.int64)


@functools.cache
def sklearn_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits as uint8 (1797, 3, 32, 32) and labels.

    The 8x8 originals (16 grey levels, 0 = background, 16 = ink, so light strokes on black as in
    MNIST) are scaled to 0..255 and upsampled x4 with bilinear interpolation
    (``align_corners=False``), then the grey channel is repeated three times. Built once per
    process (reading sklearn's file and upsampling cost 14 ms, and a Wang or Davchev notebook
    loads the domain dozens of times); callers share the tensors and must not modify them.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    grey = torch.from_numpy(bunch.images.astype(np.float32) * (255.0 / 16.0))[:, None]
    big = F.interpolate(grey, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    images = big.clamp(0, 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return images, torch.from_numpy(bunch.target.astype(np.int64))


# ---------------------------------------------------------------- cache of generated sets


def cache_path(name: str, params: dict[str, Any]) -> Path:
    """Where the generated domain ``name`` with these generator parameters is cached."""
    digest = recipe_hash({"domain": name, "params": params, "version": GENERATOR_VERSION}, 16)
    return paths.subdir("embedded") / f"{name}-v{GENERATOR_VERSION}-{digest}.safetensors"


def cached(
    name: str,
    params: dict[str, Any],
    sizes: tuple[int, int],
    make: Callable[[], dict[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """The train/test tensors of generated set ``name``: from the cache, else ``make()``d and
    cached. A corrupt cache file is reported with a warning and regenerated."""
    path = cache_path(name, params)
    expected: dict[str, tuple[int, ...]] = {}
    for split, n in zip(("train", "test"), sizes, strict=True):
        expected[f"{split}_images"] = (n, 3, 32, 32)
        expected[f"{split}_labels"] = (n,)
    meta = {
        "domain": name,
        "params": json.dumps(params, sort_keys=True),
        "version": str(GENERATOR_VERSION),
    }
    tensors, _ = cached_entry(path, f"{name} set", lambda: (make(), meta), expected)
    return tensors
