"""User errors end in one line, `error: ...`, and exit status 1; the `debug` config key brings the traceback back."""

from __future__ import annotations

from typing import NoReturn


class InputError(RuntimeError):
    """An expected problem with the user's input (data, checkpoint, datalist), raised as such under `debug`."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def root_cause(error: BaseException) -> BaseException:
    """The innermost `__cause__`: MONAI wraps a transform's error in "applying transform <Compose ...>"."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def stop(message: str, debug: bool = False, cause: BaseException | None = None) -> NoReturn:
    """Stop with `error: <message>` and exit status 1, without a traceback unless `debug` is set.

    `SystemExit` is the one exception Python ends on without printing a traceback, also under `monai.bundle run`.
    """
    if debug:
        raise InputError(message) from cause
    raise SystemExit(f"error: {message}")
