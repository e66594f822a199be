#!/usr/bin/env python3
"""A net-snmp pass_persist agent for the SNMP power tests: an APC rack PDU's
rPDUOutletControlOutletCommand column (.1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.N)
for outlets 1..8.

Usage: apc_rpdu.py STATE_DIR

Reads return 1 (immediateOn) or 2 (immediateOff); an outlet starts on unless
STATE_DIR/outlet-N holds its value. Sets take 1 on, 2 off, 3 reboot (reads
back on); anything else is wrong-value. Every accepted set is appended to
STATE_DIR/sets.log as "outlet N VALUE".
"""

import os
import sys

COLUMN = (1, 3, 6, 1, 4, 1, 318, 1, 1, 12, 3, 3, 1, 1, 4)
OUTLETS = range(1, 9)


def parse(oid):
    try:
        return tuple(int(a) for a in oid.strip().strip(".").split("."))
    except ValueError:
        return None


def dotted(arcs):
    return "." + ".".join(str(a) for a in arcs)


class Pdu:
    def __init__(self, state_dir):
        self.dir = state_dir

    def path(self, outlet):
        return os.path.join(self.dir, "outlet-%d" % outlet)

    def value(self, outlet):
        try:
            with open(self.path(outlet)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return 1

    def store(self, outlet, value):
        tmp = self.path(outlet) + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % value)
        os.replace(tmp, self.path(outlet))
        with open(os.path.join(self.dir, "sets.log"), "a") as f:
            f.write("outlet %d %d\n" % (outlet, value))

    @staticmethod
    def outlet_of(arcs):
        if arcs is None or len(arcs) != len(COLUMN) + 1 or arcs[:-1] != COLUMN:
            return None
        return arcs[-1] if arcs[-1] in OUTLETS else None

    def get(self, arcs):
        outlet = self.outlet_of(arcs)
        if outlet is None:
            return None
        return (dotted(arcs), "integer", str(self.value(outlet)))

    def getnext(self, arcs):
        if arcs is None:
            return None
        for outlet in OUTLETS:
            candidate = COLUMN + (outlet,)
            if candidate > arcs:
                return self.get(candidate)
        return None

    def set(self, arcs, typed):
        outlet = self.outlet_of(arcs)
        if outlet is None:
            return "not-writable"
        kind, _, text = typed.strip().partition(" ")
        if kind.lower() != "integer":
            return "wrong-type"
        try:
            value = int(text)
        except ValueError:
            return "wrong-value"
        if value not in (1, 2, 3):
            return "wrong-value"
        self.store(outlet, 1 if value == 3 else value)
        return "DONE"


def main():
    pdu = Pdu(sys.argv[1])
    out = sys.stdout
    lines = iter(sys.stdin.readline, "")
    for line in lines:
        cmd = line.strip().lower()
        if cmd == "ping":
            out.write("PONG\n")
        elif cmd in ("get", "getnext"):
            arcs = parse(next(lines, ""))
            found = pdu.get(arcs) if cmd == "get" else pdu.getnext(arcs)
            out.write("\n".join(found) + "\n" if found else "NONE\n")
        elif cmd == "set":
            arcs = parse(next(lines, ""))
            typed = next(lines, "")
            out.write(pdu.set(arcs, typed) + "\n")
        elif cmd == "":
            continue
        else:
            out.write("NONE\n")
        out.flush()


if __name__ == "__main__":
    main()
