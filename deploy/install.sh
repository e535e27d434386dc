#!/usr/bin/env bash
# Install dalaba into a virtualenv from the hash-pinned lock.
#
#   deploy/install.sh [VENV] [PACKAGE]
#
# VENV     the virtualenv, made if missing (default /opt/dalaba/venv, where the systemd units
#          expect it)
# PACKAGE  dalaba itself: this checkout (default) or a built wheel
# PYTHON   the interpreter for a new virtualenv (default python3; 3.11 or newer)
#
# Every dependency, PostgreSQL's driver (the postgres extra) included, comes from
# deploy/requirements.lock with its hash checked: pip refuses a file whose hash differs and
# any package that is not pinned there. dalaba itself is then installed without dependencies.
# Run it again after updating the checkout to upgrade.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-/opt/dalaba/venv}
package=${2:-$(dirname "$here")}

[ -x "$venv/bin/pip" ] || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/pip" install --quiet --require-hashes -r "$here/requirements.lock"
"$venv/bin/pip" install --quiet --no-deps --force-reinstall "$package"
"$venv/bin/dalaba" --help >/dev/null
echo "dalaba installed in $venv"
