"""Reads an ISO 9660 config drive with pycdlib (an independent, strict
parser) for the config drive tests.

Usage: configdrive_read.py <iso> [<directory>]

Prints a JSON document: the Rock Ridge version, whether there is a Joliet
tree, every path of the Rock Ridge tree with its mode (and a file's text),
and every file of the Joliet tree with its text. With a directory, also
extracts the Rock Ridge tree there (as a mounted drive would show it).
"""

import io
import json
import os
import sys

import pycdlib


def read(iso, **path):
    buf = io.BytesIO()
    iso.get_file_from_iso_fp(buf, **path)
    return buf.getvalue().decode()


def main():
    iso = pycdlib.PyCdlib()
    iso.open(sys.argv[1])
    out = {
        "rock_ridge": iso.has_rock_ridge() and iso.rock_ridge,
        "joliet": iso.has_joliet(),
        "rr": {},
        "joliet_files": {},
    }
    if iso.has_rock_ridge():
        for top, dirs, files in iso.walk(rr_path="/"):
            paths = [top] if top == "/" else []
            paths += [top.rstrip("/") + "/" + n for n in dirs + files]
            for path in paths:
                rec = iso.get_record(rr_path=path)
                if path == "/":
                    # The root's Rock Ridge entries are in its "." record.
                    rec = next(
                        c for c in iso.list_children(rr_path="/") if c.is_dot()
                    )
                entry = {
                    "mode": rec.rock_ridge.get_file_mode(),
                    "dir": rec.is_dir(),
                }
                if not rec.is_dir():
                    entry["data"] = read(iso, rr_path=path)
                out["rr"][path] = entry
    if iso.has_joliet():
        for top, _dirs, files in iso.walk(joliet_path="/"):
            for n in files:
                path = top.rstrip("/") + "/" + n
                out["joliet_files"][path] = read(iso, joliet_path=path)
    if len(sys.argv) > 2:
        dest = sys.argv[2]
        for path, entry in out["rr"].items():
            target = os.path.join(dest, path.lstrip("/"))
            if entry["dir"]:
                os.makedirs(target, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "w") as f:
                    f.write(entry["data"])
    iso.close()
    print(json.dumps(out))


main()
