"""``python -m executor_worker``: the same as ``llmexec worker executor``."""

import sys

from pipeline.cli import main

sys.exit(main(["worker", "executor", *sys.argv[1:]]))
