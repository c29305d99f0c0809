"""Typed errors. Every message says what is wrong, with which file or value, and what to do.

`UserInputError` (and subclasses) are the user's to fix: CLIs print the message without a traceback and
exit 2. Anything else that escapes is a bug or an environment failure (exit 1).
"""

from __future__ import annotations

from typing import Sequence


class EdgekdError(Exception):
    """Base of every error edgekd raises on purpose."""


class EdgekdWarning(UserWarning):
    """Something edgekd adjusted or doubts but can go on with (e.g. threads capped at the cores); the CLIs print
    it as one `warning: <message>` line on stderr."""


class UserInputError(EdgekdError, ValueError):
    """Bad input from the user: a path, file, value or option. CLIs exit 2."""


class UnknownNameError(UserInputError, KeyError):
    """A registry lookup with a name that is not registered."""

    def __init__(self, family: str, name: str, known: Sequence[str]) -> None:
        self.family, self.name, self.known = family, name, list(known)
        plural = family + ("es" if family.endswith(("s", "x", "ch", "sh")) else "s")  # KD losses, not "losss"
        super().__init__(f"unknown {family} {name!r}; known {plural}: {', '.join(self.known) or '(none)'}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class ModelLoadError(UserInputError):
    """A model file that is missing, not a model, truncated or corrupt."""


class ModelOutputError(UserInputError):
    """A model whose scores are not an answer (NaN, infinite probabilities): its weights or normalisation are
    broken. Never returned as a prediction."""


class ManifestError(UserInputError):
    """A bundle manifest that is missing, malformed or inconsistent with its files."""


class ChecksumMismatchError(ManifestError):
    """A model file whose sha256 differs from the one its manifest records."""


class ImageError(UserInputError):
    """An image that cannot be read or used (unreadable, empty, too small, NaN, wrong shape)."""


class BlankImageError(ImageError):
    """An image with no ink on it: refusing to guess."""


class MultipleLinesError(ImageError):
    """A line image holding more than one line of writing, one above the other: reading one of them would drop the
    others silently."""


class InputShapeError(UserInputError):
    """An input array whose shape or dtype does not fit the model."""


class BackendUnavailableError(EdgekdError):
    """No installed interpreter can run this model format (e.g. no TFLite runtime)."""


class ProfileError(UserInputError):
    """A device profile (built-in name or JSON file) that is missing, malformed or lacks what is asked of it."""


class CalibrationError(EdgekdError):
    """The calibration suite could not be run or fitted on this board (exit 1)."""


class BudgetError(UserInputError):
    """A hardware budget that is invalid, contradictory, or that no candidate student meets."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """`Type: first line of the message` of an exception from a library, for a typed error's message (just the
    type when the message is empty, as many of torch's and pickle's are)."""
    lines = str(e).strip().splitlines()
    if not lines:
        return type(e).__name__
    text = lines[0] if len(lines[0]) <= limit else lines[0][:limit].rsplit(" ", 1)[0] + " ..."  # whole words
    return f"{type(e).__name__}: {text}"


class PatternError(UserInputError):
    """A reading constraint (pattern, allowed characters, length limits) that is malformed, or that no string over
    the model's character set can satisfy."""


class WrongTaskError(UserInputError):
    """A call made on a recognizer of the other task: `predict` on a text-line bundle, `read` on a digit one."""
