"""Compares the per-suite results of run.sh: summary.py DIR RMQ SLOW SUITE...
Prints passed/failed/skipped per broker and the Warren-only failures; exits
1 when a test passing on RabbitMQ (or, without RabbitMQ, any test) fails on
Warren, or a suite that ran on RabbitMQ produced no results on Warren."""
import os
import sys

d, rmq, slow = sys.argv[1], sys.argv[2] == "1", sys.argv[3].split()
suites = sys.argv[4:]


def load(path):
    r = {}
    if os.path.exists(path):
        for line in open(path):
            parts = line.rstrip("\n").split(" ", 1)
            if len(parts) == 2 and parts[0] in ("PASS", "FAIL", "SKIP"):
                r[parts[1]] = parts[0]
    return r


def counts(r):
    v = list(r.values())
    return "%d passed, %d failed, %d skipped" % (v.count("PASS"), v.count("FAIL"), v.count("SKIP"))


# Tests that fail on Warren because of a difference the README documents
# as deliberate ("Deliberate differences"): name -> why.
DELIBERATE = {
    # amqplib asserts the AMQP server property product == "RabbitMQ";
    # Warren names itself (product "Warren", version Warren's); the
    # management API says which RabbitMQ release it follows.
    "Connect/Connect API/serverProperties": "the server property 'product' is 'Warren'",
}

bad = 0
tot = {"warren": [0, 0, 0], "rabbitmq": [0, 0, 0]}
print()
print("==== compat summary ====")
for s in suites:
    nr = os.path.join(d, s + ".notrun")
    if os.path.exists(nr):
        print("%-11s NOT RUN: %s" % (s, open(nr).read().strip()))
        if os.environ.get("WARREN_REQUIRE_ALL") == "1":
            # in CI a suite that could not run is a failure, not a pass
            print("%-11s   WARREN_REQUIRE_ALL=1: a suite that did not run fails the run" % "")
            bad = 1
        continue
    w = load(os.path.join(d, s + ".warren"))
    r = load(os.path.join(d, s + ".rabbitmq")) if rmq else {}
    for b, res in (("warren", w), ("rabbitmq", r)):
        v = list(res.values())
        for i, k in enumerate(("PASS", "FAIL", "SKIP")):
            tot[b][i] += v.count(k)
    print("%-11s warren:   %s" % (s, counts(w)))
    if rmq:
        print("%-11s rabbitmq: %s" % ("", counts(r)))
    if not w:
        print("%-11s   no results from Warren (see the suite's output)" % "")
        bad = 1
        continue
    deliberate = sorted(n for n, st in w.items() if st == "FAIL" and n in DELIBERATE)
    for n in deliberate:
        print("%-11s   deliberate difference (README): %s" % ("", n))
    only = sorted(n for n, st in w.items() if st == "FAIL" and n not in DELIBERATE and (not rmq or r.get(n) == "PASS"))
    both = sorted(n for n, st in w.items() if st == "FAIL" and rmq and r.get(n) == "FAIL")
    missing = sorted(n for n, st in r.items() if st == "PASS" and n not in w)
    for n in only:
        print("%-11s   FAIL on Warren only: %s" % ("", n))
    for n in missing:
        print("%-11s   passes on RabbitMQ, did not run on Warren: %s" % ("", n))
    for n in both:
        print("%-11s   fails on both: %s" % ("", n))
    for n in sorted(n for n, st in r.items() if st == "FAIL" and w.get(n) == "PASS"):
        print("%-11s   fails on RabbitMQ only: %s" % ("", n))
    if only or missing:
        bad = 1
if slow:
    print("excluded (too slow for make compat, minutes on RabbitMQ too): %s" % " ".join(slow))
for b in ("warren", "rabbitmq"):
    if b == "rabbitmq" and not rmq:
        continue
    p, f, k = tot[b]
    print("%s: %d passed, %d failed, %d skipped" % (b, p, f, k))
sys.exit(bad)
