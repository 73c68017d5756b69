#!/usr/bin/env python3
"""Check ops/: the Grafana dashboard is JSON Grafana can import (panels with
ids, queries, positions), and every metric the dashboard and the alert rules
name is one the switch exports (a string literal in switch/ or ledger/), so
that a renamed metric cannot leave a silent panel or an alert that never
fires. promtool checks the rules' syntax and behaviour (.ci/run)."""
import json
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
sources = "\n".join(
    p.read_text(encoding="utf-8")
    for d in ("switch/src", "ledger/src")
    for p in (root / d).rglob("*.rs")
)
exported = set(re.findall(r'"((?:switch|ledger)_[a-z_]+)"', sources))

errors = []
dashboard_path = root / "ops/grafana/switch-dashboard.json"
dashboard = json.loads(dashboard_path.read_text(encoding="utf-8"))
ids = [p.get("id") for p in dashboard["panels"]]
if len(set(ids)) != len(ids) or None in ids:
    errors.append("dashboard: panel ids must be present and distinct")
for p in dashboard["panels"]:
    if not p.get("targets") or not all(t.get("expr") for t in p["targets"]):
        errors.append(f"dashboard: panel {p.get('title')!r} has no query")
    if set(p.get("gridPos", {})) != {"x", "y", "w", "h"}:
        errors.append(f"dashboard: panel {p.get('title')!r} has no position")

texts = {
    "ops/grafana/switch-dashboard.json": dashboard_path.read_text(encoding="utf-8"),
    "ops/prometheus/alerts.yml": (root / "ops/prometheus/alerts.yml").read_text(encoding="utf-8"),
}
for name, text in texts.items():
    for metric in sorted(set(re.findall(r"\b((?:switch|ledger)_[a-z_]+)", text))):
        base = re.sub(r"_(sum|count|bucket)$", "", metric)
        if metric not in exported and base not in exported:
            errors.append(f"{name}: {metric} is not a metric the switch exports")

for e in errors:
    print(e, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"ops: dashboard ({len(ids)} panels) and alert rules name only exported metrics")
