"""Reads node's test runner TAP output on stdin; writes one line per test
(suites left out): PASS|FAIL|SKIP <suite/.../test>. A test file that fails
as a whole (a time-out, a crash) counts as one FAIL."""
import re
import sys

lines = sys.stdin.read().splitlines()
res = re.compile(r"^(\s*)(not ok|ok) \d+ - (.*?)(\s+#\s*(SKIP|TODO).*)?$")
sub = re.compile(r"^(\s*)# Subtest: (.*)$")
stack = {}  # indent -> name
out = []
for i, line in enumerate(lines):
    m = sub.match(line)
    if m:
        d = len(m.group(1))
        stack = {k: v for k, v in stack.items() if k < d}
        stack[d] = m.group(2)
        continue
    m = res.match(line)
    if not m:
        continue
    d = len(m.group(1))
    name = m.group(3)
    # the YAML block after the line tells a suite from a test
    suite = False
    for nxt in lines[i + 1:i + 40]:
        if nxt.strip() == "...":
            break
        if "type: 'suite'" in nxt:
            suite = True
    failed = m.group(2) == "not ok"
    if name.startswith("/"):  # a whole test file
        if failed:
            out.append(("FAIL", name.rsplit("/", 1)[-1] + " (file)"))
        continue
    if suite:
        continue
    path = "/".join(v for k, v in sorted(stack.items()) if k < d)
    full = (path + "/" if path else "") + name
    if m.group(5) == "SKIP":
        out.append(("SKIP", full))
    else:
        out.append(("FAIL" if failed else "PASS", full))
for s, n in out:
    print(s, n)
