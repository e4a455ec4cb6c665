"""Facts that more than one module needs, each stated once. Standard library only: the CLI's
--help reads these."""
from __future__ import annotations

#: the target used when none is given (CLI, API, pipeline files)
DEFAULT_TARGET = "tflite"

#: seconds one artifact may take on one device in `edgekit bench`, unless --timeout says otherwise
BENCH_TIMEOUT_S = 300.0

