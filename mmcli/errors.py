"""One exception hierarchy, carrying the exit codes of the command line (docs/cli.md).

Messages speak of the model and the data. ``param`` names the argument a message is about (``lambda``,
``knots``...), so that the command line can name its own option for it."""

from __future__ import annotations


class MmcliError(Exception):
    """An error the user can fix; printed as one ``Error: ...`` line."""

    exit_code = 1

    def __init__(self, message: str = "", *, param: str | None = None):
        super().__init__(message)
        self.param = param


class DataError(MmcliError):
    """The data or the model cannot be fitted (exit 1)."""

    exit_code = 1


class ModelError(MmcliError):
    """The model specification is invalid for these data (exit 1)."""

    exit_code = 1


class UsageError(MmcliError):
    """Bad options or formula syntax (exit 2)."""

    exit_code = 2


class FormulaError(UsageError):
    """A formula that cannot be parsed; the message points at the position."""

    def __init__(self, message: str, text: str = "", pos: int | None = None):
        if text and pos is not None:
            message = f"{message} in formula '{text}' at position {pos + 1}: {text[:pos]}>>>{text[pos:]}"
        super().__init__(message)


EXIT_NOT_CONVERGED = 3
EXIT_INTERRUPTED = 130


class NotConvergedError(MmcliError):
    """An iteration that did not converge and left no answer to report (exit 3)."""

    exit_code = EXIT_NOT_CONVERGED
