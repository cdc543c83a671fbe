"""``python -m llmexec``: the same as the ``llmexec`` console script."""

import sys

from llmexec.cli import main

sys.exit(main())
