"""How the report names things: numbers with SI suffixes and baseline names."""

from __future__ import annotations


def si(x: float) -> str:
    """1.55e6 -> '1.55M', 2e5 -> '200k' (3 significant digits)."""
    for div, s in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{s}"
    return f"{x:.3g}"


def scale_label(N: float, D: float) -> str:
    return f"N={si(N)}, D={si(D)}"


def pretty(name: str) -> str:
    """A baseline's name in prose: temperature_0.3 -> 'temperature τ=0.3', unimax -> 'UniMax'."""
    if name.startswith("temperature_"):
        return f"temperature τ={name.split('_', 1)[1]}"
    return {"unimax": "UniMax"}.get(name, name)


def short(name: str) -> str:
    """A baseline's column label in the text table: temperature_0.3 -> 'temp τ=0.3'."""
    if name.startswith("temperature_"):
        return f"temp τ={name.split('_', 1)[1]}"
    return {"unimax": "UniMax"}.get(name, name)[:12]
