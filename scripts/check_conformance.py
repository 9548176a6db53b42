"""Fails unless every scim2-tester check in the given output succeeded."""
import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
statuses = re.findall(r"^([A-Z]+) (\w+)", text, re.MULTILINE)
counts = {}
for status, _ in statuses:
    counts[status] = counts.get(status, 0) + 1
bad = [(s, name) for s, name in statuses if s != "SUCCESS"]
print("scim2-tester:", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no checks")
if not statuses or counts.get("SUCCESS", 0) < 50:
    sys.exit("scim2-tester ran too few checks; is the server reachable?")
if bad:
    for s, name in bad:
        print(f"  {s} {name}")
    sys.exit(f"{len(bad)} conformance check(s) did not succeed")
