"""Which third-party packages to tell the model about when ``LIGHT_PACKAGES`` /
``HEAVY_PACKAGES`` are not set: the common ones this environment can import.

Run once when the worker is assembled, never when settings are read, so reading
configuration stays free of host probing.
"""

from __future__ import annotations

import importlib.util

from llm_worker.settings import LlmSettings

#: Third-party packages worth telling the model about when they are installed.
COMMON_PACKAGES = ("numpy", "pandas", "scipy", "sympy")


def installed(names: tuple[str, ...] = COMMON_PACKAGES) -> tuple[str, ...]:
    return tuple(name for name in names if importlib.util.find_spec(name) is not None)


def with_detected_packages(settings: LlmSettings) -> LlmSettings:
    """``settings`` with unset package lists filled from this environment."""
    if settings.light_packages is not None and settings.heavy_packages is not None:
        return settings
    found = installed()
    return settings.model_copy(update={
        "light_packages": found if settings.light_packages is None else settings.light_packages,
        "heavy_packages": found if settings.heavy_packages is None else settings.heavy_packages,
    })
