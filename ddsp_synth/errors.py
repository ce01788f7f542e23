"""One base class for the problems a user can fix, and their one-line text.

Every error that a bad input, a bad setting or a missing file can cause derives from
:class:`UserError`; the command line and the web demo catch that class alone and print its
message as one line. Anything else is a bug in ddsp_synth and keeps its traceback.

This module imports nothing heavy: black-box worker processes import it without torch.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (a bad input, setting or file), with a one-line message."""


class InputError(UserError, ValueError):
    """A bad value or signal given to the library (a ``ValueError`` too, so that callers who
    catch ``ValueError`` keep working)."""


def one_line(err: BaseException, with_type: bool = False) -> str:
    """The first line of an error's message (its type name when it has none).

    Args:
        err: the exception.
        with_type: prefix the type name, for errors that are not a :class:`UserError` (a
            library's own exception inside a worker, say), whose message alone may not say
            what went wrong.
    """
    lines = str(err).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if not text:
        return type(err).__name__
    if with_type and not isinstance(err, UserError):
        return f"{type(err).__name__}: {text}"
    return text
