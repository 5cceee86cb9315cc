"""Reads `go test -json` on stdin; writes one line per top-level test:
PASS|FAIL|SKIP <name>. Tests that started but never finished (a hang,
a panic) count as FAIL."""
import json
import sys

state = {}
order = []
for line in sys.stdin:
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    name = ev.get("Test")
    if not name or "/" in name:
        continue
    act = ev.get("Action")
    if act == "run":
        if name not in state:
            order.append(name)
        state[name] = "FAIL"
    elif act in ("pass", "fail", "skip"):
        if name not in state:
            order.append(name)
        state[name] = act.upper()
for name in order:
    print(state[name], name)
