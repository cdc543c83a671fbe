"""What other systems use to read results and dead letters."""

from consumers.dedupe import Deduplicator
from consumers.results import ResultFollower, result_from_dead_letter

__all__ = ["Deduplicator", "ResultFollower", "result_from_dead_letter"]
