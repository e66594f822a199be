#!/bin/sh
# Creates the Python venv with the real `baremetal` CLI (python-ironicclient
# from PyPI) that coordinator/tests/baremetal_cli.rs drives. Idempotent.
# Usage: coordinator/tests/ironicclient-venv.sh [<venv dir>]
# Default: <workspace>/target/venv-ironicclient. Needs python3 with venv
# (Debian: python3-venv) and access to PyPI.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-$here/../../target/venv-ironicclient}
# The scripts' #! lines name the venv: make the path absolute.
mkdir -p "$(dirname "$venv")"
venv=$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")
if [ -x "$venv/bin/baremetal" ]; then
    exit 0
fi
python3 -m venv "$venv.tmp.$$"
"$venv.tmp.$$/bin/pip" install --quiet --disable-pip-version-check python-ironicclient
rm -rf "$venv"
mv "$venv.tmp.$$" "$venv"
# pip wrote absolute paths of the temporary directory into the scripts: recreate them.
python3 -m venv --upgrade "$venv" >/dev/null
for f in "$venv"/bin/*; do
    if head -c 2 "$f" 2>/dev/null | grep -q '#!'; then
        sed -i "1s|^#!.*/python[0-9.]*\$|#!$venv/bin/python|" "$f"
    fi
done
"$venv/bin/baremetal" --version >/dev/null
