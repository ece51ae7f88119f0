"""Heavy libraries (pyarrow, numpy) imported on first use, not when the daemon starts.

pyarrow and the numpy it pulls in are ~45 MB of an idle daemon's RSS and most of a
second of its start, yet an empty, idle daemon never touches them: they are needed from
the first changeset applied, query exported as Arrow or snapshot made. A module that
uses them writes::

    if TYPE_CHECKING:
        import pyarrow as pa
    else:
        pa = lazy_module("pyarrow")

and keeps calling ``pa.table(...)``; type checkers see the real module. The import
runs on the first attribute read, under the interpreter's import lock, so two threads
that get there at once load it once. (``importlib.util.LazyLoader`` would do the same
through ``sys.modules``, but before Python 3.12 it is not thread-safe.)
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for module ``name`` and imports it when an attribute is first read."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded yet"
        return f"<lazy module {self._name!r}, {state}>"


def lazy_module(name: str) -> Any:
    """A stand-in for module ``name`` that imports it on first attribute access."""
    return LazyModule(name)
