"""``python -m llm_worker``: the same as ``llmexec worker llm``."""

import sys

from pipeline.cli import main

sys.exit(main(["worker", "llm", *sys.argv[1:]]))
