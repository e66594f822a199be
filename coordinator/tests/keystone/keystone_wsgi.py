"""Serves Keystone's public WSGI app (keystone.wsgi.api) with waitress on
127.0.0.1:PORT. Started by keystone-lab.sh start.

Usage: keystone_wsgi.py CONFIG_FILE PORT

A runner of our own rather than a server's command line: Keystone's app
parses sys.argv with oslo.config when it is imported, so a server's own
arguments (gunicorn's --bind ...) make it fail ("unrecognized arguments").
"""

import os
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    config, port = sys.argv[1], int(sys.argv[2])
    os.environ["OS_KEYSTONE_CONFIG_FILES"] = config
    sys.argv = sys.argv[:1]

    from keystone.wsgi.api import application
    import waitress

    waitress.serve(
        application,
        host="127.0.0.1",
        port=port,
        threads=4,
        ident="keystone-lab",
    )


if __name__ == "__main__":
    main()
