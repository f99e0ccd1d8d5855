"""Named model sizes.

CPU presets span 0.1M to 3.2M non-embedding parameters (a factor of 32), small enough that a
sweep of dozens of runs fits on a 2-core machine. Paper presets reproduce the four scales of
He et al. (2024, arXiv 2410.12883): about 85M, 397M, 810M and 1.2B non-embedding parameters.
Widths follow the usual d_ff ~ 8/3 d_model of SwiGLU models; head size 32 on CPU, 64-128 above.
"""

from __future__ import annotations

import dataclasses

from multiscale.errors import InputError
from multiscale.models.config import ModelConfig

PRESETS: dict[str, ModelConfig] = {
    # name:        d_model, layers, heads, d_ff
    "cpu-100k": ModelConfig(d_model=64, num_layers=2, num_heads=2, d_ff=176),
    "cpu-200k": ModelConfig(d_model=64, num_layers=4, num_heads=2, d_ff=176),
    "cpu-400k": ModelConfig(d_model=96, num_layers=4, num_heads=3, d_ff=256),
    "cpu-800k": ModelConfig(d_model=128, num_layers=4, num_heads=4, d_ff=352),
    "cpu-1.6m": ModelConfig(d_model=160, num_layers=5, num_heads=5, d_ff=432),
    "cpu-3m": ModelConfig(d_model=256, num_layers=4, num_heads=8, d_ff=688),
    # He et al. (2024) scales.
    "paper-85m": ModelConfig(d_model=768, num_layers=12, num_heads=12, d_ff=2048),
    "paper-397m": ModelConfig(d_model=1536, num_layers=14, num_heads=12, d_ff=4096),
    "paper-810m": ModelConfig(d_model=2048, num_layers=16, num_heads=16, d_ff=5440),
    "paper-1.2b": ModelConfig(d_model=2048, num_layers=24, num_heads=16, d_ff=5440),
}


class UnknownPresetError(InputError):
    """A preset name that is not in `PRESETS`."""


def get_preset(name: str, *, vocab_size: int | None = None, **overrides) -> ModelConfig:
    """The preset `name`, optionally with another vocabulary size or other field overrides."""
    try:
        cfg = PRESETS[name]
    except KeyError:
        raise UnknownPresetError(
            f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
    if vocab_size is not None:
        overrides["vocab_size"] = vocab_size
    return dataclasses.replace(cfg, **overrides) if overrides else cfg
