"""Each test module's total time, from pytest's JUnit XML: the order of the parallel test run.

    .venv/bin/pytest -m "not alone" -n 2 --dist loadfile --junitxml run.xml
    python3 scripts/test_durations.py run.xml [more.xml ...]    # rewrites tests/durations.json

With --dist loadfile a module's tests run on one test process; tests/conftest.py hands the modules
out longest first (from tests/durations.json), so the run ends on short modules instead of waiting
for a long one started last. Prints the totals, longest first; the machine's load changes them, so
only their relative sizes matter.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DURATIONS = ROOT / "tests" / "durations.json"
# Modules whose first run on a fresh clone (CI's) is far longer than a warm one: the quick start
# installs mieruka[demo] into a venv of its own (about a minute), later runs reuse it. They keep the
# longer of their recorded and reported times, so that CI starts them first.
COLD_FIRST = {"tests/servers/test_quickstart.py"}


def module_of(classname: str) -> str | None:
    """tests.servers.test_cli (or tests.servers.test_cli.TestClass) -> tests/servers/test_cli.py."""
    parts = classname.split(".")
    while parts:
        path = "/".join(parts) + ".py"
        if (ROOT / path).is_file():
            return path
        parts.pop()
    return None


def totals(reports: list[Path]) -> dict[str, float]:
    seconds: dict[str, float] = defaultdict(float)
    for report in reports:
        for case in ET.parse(report).iter("testcase"):
            module = module_of(case.get("classname", ""))
            if module is not None:
                seconds[module] += float(case.get("time", "0"))
    return dict(sorted(seconds.items(), key=lambda item: -item[1]))


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.strip())
        return 2
    found = totals([Path(arg) for arg in sys.argv[1:]])
    recorded = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    for module in COLD_FIRST & found.keys():
        found[module] = max(found[module], recorded.get(module, 0.0))
    found = dict(sorted(found.items(), key=lambda item: -item[1]))
    for module, seconds in found.items():
        print(f"{seconds:8.1f}  {module}")
    print(f"{sum(found.values()):8.1f}  in all ({len(found)} modules)")
    DURATIONS.write_text(json.dumps({m: round(s, 1) for m, s in found.items()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
