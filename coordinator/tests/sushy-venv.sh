#!/bin/sh
# Creates the Python venv with sushy-tools (the Redfish emulator, PyPI) that
# coordinator/tests/redfish.rs runs with its fake driver. Idempotent.
# Usage: coordinator/tests/sushy-venv.sh [<venv dir>]
# Default: <workspace>/target/venv-sushy. Needs python3 with venv
# (Debian: python3-venv) and access to PyPI.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-$here/../../target/venv-sushy}
# Absolute, so that the scripts' #! lines work from any directory.
mkdir -p "$(dirname "$venv")"
venv=$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")
if [ -x "$venv/bin/sushy-emulator" ]; then
    exit 0
fi
python3 -m venv "$venv.tmp.$$"
"$venv.tmp.$$/bin/pip" install --quiet --disable-pip-version-check sushy-tools
rm -rf "$venv"
mv "$venv.tmp.$$" "$venv"
# pip wrote absolute paths of the temporary directory into the scripts: recreate them.
python3 -m venv --upgrade "$venv" >/dev/null
for f in "$venv"/bin/*; do
    if head -c 2 "$f" 2>/dev/null | grep -q '#!'; then
        sed -i "1s|^#!.*/python[0-9.]*\$|#!$venv/bin/python|" "$f"
    fi
done
"$venv/bin/python" -c "import sushy_tools, bcrypt" >/dev/null
