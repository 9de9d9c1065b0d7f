"""Rules for a bundle's top-level knobs, checked at start with one `error:` line per run (the bundle's `knobs.py`
declares which rule each knob follows).

MONAI's config parser resolves references but checks no values, so a bad `--roi_size` or `--cache` would otherwise
end in a traceback, some only after the data were loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from scripts.errors import stop


@dataclass(frozen=True)
class Knob:
    """One top-level key: what it accepts, said in words for the error, and whether MLflow records it."""

    allowed: str
    accepts: Callable[[Any], bool]
    tracked: bool = False
    switch: bool = False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _range_text(low: float | None, high: float | None, high_open: bool, low_open: bool = False) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def _within(value: float, low: float | None, high: float | None, high_open: bool, low_open: bool = False) -> bool:
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    return above and below


def switch(tracked: bool = False) -> Knob:
    """An on/off key; the CLI reads `--amp false` as the truthy string "false", so only True/False pass."""
    return Knob("True or False (capitalised on the command line)", lambda v: isinstance(v, bool), tracked, True)


def choice(*options: Any, tracked: bool = False) -> Knob:
    """One of `options` (None among them where the key may be left unset)."""
    return Knob(
        f"one of {', '.join(map(str, options))}", lambda v: any(v == o and type(v) is type(o) for o in options), tracked
    )


def integer(low: int | None = None, high: int | None = None, optional: bool = False, tracked: bool = False) -> Knob:
    """A whole number in [low, high] (null too where `optional`)."""
    text = "an integer" + (f" {_range_text(low, high, False)}" if low is not None else "")
    return Knob(
        text + (", or null" if optional else ""),
        lambda v: (optional and v is None) or (_is_int(v) and _within(v, low, high, False)),
        tracked,
    )


def number(
    low: float | None = None,
    high: float | None = None,
    high_open: bool = False,
    low_open: bool = False,
    optional: bool = False,
    tracked: bool = False,
) -> Knob:
    """A number in the range given (null too where `optional`)."""
    text = "a number" + (f" {_range_text(low, high, high_open, low_open)}" if low is not None else "")
    return Knob(
        text + (", or null" if optional else ""),
        lambda v: (optional and v is None) or (_is_number(v) and _within(v, low, high, high_open, low_open)),
        tracked,
    )


def numbers(count: int, low: float, high: float, tracked: bool = False) -> Knob:
    """A list of `count` numbers, each strictly between `low` and `high`."""
    return Knob(
        f"a list of {count} numbers, each in ({low}, {high})",
        lambda v: isinstance(v, list | tuple) and len(v) == count and all(_is_number(x) and low < x < high for x in v),
        tracked,
    )


def sizes(count: int, multiple: int, minimum: int, tracked: bool = False) -> Knob:
    """A list of `count` integers, each a multiple of `multiple` and at least `minimum` (a spatial size)."""
    each = f"a multiple of {multiple} and at least {minimum}" if multiple > 1 else f"at least {minimum}"
    return Knob(
        f"a list of {count} integers, each {each}",
        lambda v: (
            isinstance(v, list | tuple)
            and len(v) == count
            and all(_is_int(x) and x % multiple == 0 and x >= minimum for x in v)
        ),
        tracked,
    )


def multiple_of(factor: int, tracked: bool = False) -> Knob:
    """A positive integer divisible by `factor`."""
    return Knob(f"a positive multiple of {factor}", lambda v: _is_int(v) and v > 0 and v % factor == 0, tracked)


def text(optional: bool = True, tracked: bool = False) -> Knob:
    """A string (a path, a name or a URI); null too where `optional`."""
    return Knob(
        "a string" + (", or null" if optional else ""),
        lambda v: isinstance(v, str) or (optional and v is None),
        tracked,
    )


def anything(tracked: bool = False) -> Knob:
    """A value this module does not judge (a device, a list of names): the code that uses it does."""
    return Knob("anything", lambda v: True, tracked)


def problems(values: Mapping[str, Any], knobs: Mapping[str, Knob]) -> list[str]:
    """One `key=value: allowed` line per value its rule refuses; a key with no rule is the bundle's own mistake."""
    if unknown := sorted(set(values) - set(knobs)):
        raise KeyError(f"knobs without a rule in scripts/knobs.py: {', '.join(unknown)}")
    return [
        f"{key}={value!r} is not allowed: {knobs[key].allowed}"
        for key, value in values.items()
        if not knobs[key].accepts(value)
    ]


def require(found: list[str], debug: Any = False) -> None:
    """Stop with one line naming every refused key, value and what is allowed."""
    if found:
        stop("; ".join(found), debug=debug is True)


def tracked(values: Mapping[str, Any], knobs: Mapping[str, Knob], extra: Mapping[str, Any] | None = None) -> dict:
    """The MLflow parameters: every value whose knob is tracked, then `extra` (values the run resolved, e.g. 'auto')."""
    return {key: value for key, value in values.items() if knobs[key].tracked} | dict(extra or {})
