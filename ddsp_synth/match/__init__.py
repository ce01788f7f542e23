"""Reverse-engineer an effect chain: the device parameters that turn DRY into TARGET.

:func:`match` works on arrays (:mod:`.run`), :func:`match_files` is its shell for files
(:mod:`.files`); the pair (:mod:`.inputs`), where the loss listens (:mod:`.windows`), the
loss (:mod:`.loss`), the informed starts (:mod:`.guess`), the search problem
(:mod:`.problem`), the optimisers (:mod:`.optimisers`) and the identifiability report
(:mod:`.identify`) sit beside them.
"""

from .config import MatchConfig, MatchError
from .files import identifiability_line, match_files, summary_line
from .run import MatchResult, match

__all__ = ["MatchConfig", "MatchError", "MatchResult", "identifiability_line", "match",
           "match_files", "summary_line"]
