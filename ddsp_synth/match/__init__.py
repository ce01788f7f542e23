"""Reverse-engineer an effect chain: the device parameters that turn DRY into TARGET.

:func:`match` works on arrays (:mod:`.run`), :func:`match_files` is its shell for files
(:mod:`.files`); the pair and its analysis window (:mod:`.inputs`), the loss (:mod:`.loss`),
the search problem (:mod:`.problem`) and the optimisers (:mod:`.optimisers`) sit beside them.
"""

from .config import MatchConfig, MatchError
from .files import match_files, summary_line
from .run import MatchResult, match

__all__ = ["MatchConfig", "MatchError", "MatchResult", "match", "match_files", "summary_line"]
