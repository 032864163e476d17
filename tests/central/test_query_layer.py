"""Central's SQL lives in its query modules, never in route handlers: the handlers check roles and
shape answers, and a later PostgreSQL backend (issue 12) has the queries in one layer to implement."""

from __future__ import annotations

import ast
import re
from pathlib import Path

API = Path(__file__).resolve().parents[2] / "central" / "api"
SQL = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b", re.IGNORECASE)


def test_no_sql_in_the_api_package():
    found = []
    for path in sorted(API.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                found.append(f"{path.relative_to(API.parent.parent)}:{node.lineno}: {node.value.strip()[:60]!r}")
    assert not found, "SQL in route handlers (move it into a central query module):\n" + "\n".join(found)
