"""Import coremltools quietly: on Linux it logs missing native proxies, an untested torch version and
torchao kernel notices at import time, none of which a user can act on. --verbose (root logger at
INFO or below) lets them through."""
from __future__ import annotations

import logging

_NOISY = ("coremltools", "torchao", "torch.utils._pytree")


def import_coremltools():
    import sys

    if "coremltools" in sys.modules:
        return sys.modules["coremltools"]
    if logging.getLogger().getEffectiveLevel() <= logging.INFO:
        import coremltools

        return coremltools
    loggers = [logging.getLogger(name) for name in _NOISY]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        import coremltools
    finally:
        for lg, level in zip(loggers, saved):
            lg.setLevel(level)
    # conversions log version warnings through this logger while they run, too
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    return coremltools
