"""The daemon's import hooks: deferred modules load on first use, pandas never."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from daemon.cli import _Absent, _Deferred
assert "fractions" not in sys.modules
sys.meta_path.insert(0, _Deferred(frozenset({"fractions"})))
import fractions                      # found, not executed
import fractions as again             # a second import reads __spec__ only
kind = type(sys.modules["fractions"])
assert kind.__name__ == "_LazyModule", kind
assert str(fractions.Fraction(1, 2)) == "1/2"  # first use executes it
assert type(sys.modules["fractions"]) is type(sys)
sys.meta_path.insert(0, _Absent(frozenset({"pandas"}), "no"))
try:
    import pandas
except ModuleNotFoundError:
    print("ok")
"""


def test_deferred_module_loads_on_first_use_and_pandas_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


STARTUP_SCRIPT = """
import sys
import daemon.app, daemon.control.registry, daemon.cli  # what a starting daemon imports
assert not [m for m in sys.modules if m.startswith("sqlglot")], "sqlglot loaded at start"
from daemon.query.sandbox import QueryRejected, validate_query
validate_query("SELECT count(*) FROM performance_results")  # first use loads it
try:
    validate_query("DROP TABLE performance_results")
except QueryRejected:
    print("ok")
"""


def test_sqlglot_loads_on_the_first_query_not_at_start() -> None:
    out = subprocess.run(
        [sys.executable, "-c", STARTUP_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
