#!/bin/sh
# Creates a Python venv with packages from PyPI, for the tests that drive real
# Python tools (python-ironicclient's `baremetal`, sushy-tools' Redfish
# emulator). Idempotent: nothing is done when <marker> already exists.
# Usage: coordinator/tests/python-venv.sh <venv dir> <marker, relative to the venv> <package>...
# Needs python3 with venv (Debian: python3-venv) and access to PyPI.
set -eu
[ $# -ge 3 ] || { echo "usage: $0 <venv dir> <marker> <package>..." >&2; exit 2; }
venv=$1
marker=$2
shift 2
# Absolute, so that the scripts' #! lines work from any directory.
mkdir -p "$(dirname "$venv")"
venv=$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")
if [ -e "$venv/$marker" ]; then
    exit 0
fi
python3 -m venv "$venv.tmp.$$"
"$venv.tmp.$$/bin/pip" install --quiet --disable-pip-version-check "$@"
rm -rf "$venv"
mv "$venv.tmp.$$" "$venv"
# pip wrote absolute paths of the temporary directory into the scripts: recreate them.
python3 -m venv --upgrade "$venv" >/dev/null
for f in "$venv"/bin/*; do
    if head -c 2 "$f" 2>/dev/null | grep -q '#!'; then
        sed -i "1s|^#!.*/python[0-9.]*\$|#!$venv/bin/python|" "$f"
    fi
done
"$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null
test -e "$venv/$marker"
