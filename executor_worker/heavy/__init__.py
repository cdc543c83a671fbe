"""Heavy execution: one job per attempt, run by a :class:`JobRunner` (a local subprocess of
the heavy-executor entrypoint, or a Kubernetes Job), sharing one file/record contract."""

from executor_worker.heavy.contract import MARKER, parse_record
from executor_worker.heavy.runner import JobCompletion, JobRunner

__all__ = ["MARKER", "JobCompletion", "JobRunner", "parse_record"]
