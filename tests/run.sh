#!/bin/sh
# Runs the whole test suite on a fresh machine, against real daemons.
#
# Installs what it needs: as root on Debian/Ubuntu, fresh apt lists, a C
# compiler and what building Xen 4.22's xenstored takes (Xen's daemons are
# fetched by pyxs.testing with apt-get download, 4.22's built from source);
# a virtualenv in .venv with the test tools. Then: ruff, the test suite
# against Xen's C xenstored, oxenstored and the embedded daemon, the Sphinx
# docs with warnings as errors, and a quick benchmark run.
set -eu
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    # Fresh lists unless Xen's packages were fetched already: stale lists
    # name versions the mirror no longer serves.
    cache=${PYXS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pyxs}
    if [ ! -d "$cache/xen-root" ] || \
            ! apt-cache show xenstore-utils >/dev/null 2>&1; then
        apt-get update -qq
    fi
    if ! command -v cc >/dev/null 2>&1; then
        apt-get install -y -qq gcc libc6-dev >/dev/null
    fi
    # Build dependencies of Xen 4.22's xenstored (pyxs/testing/_source.py).
    missing=$(for p in build-essential bison flex python3-dev uuid-dev \
            libyajl-dev zlib1g-dev pkg-config; do
        dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
    if [ -n "$missing" ]; then
        # shellcheck disable=SC2086
        apt-get install -y -qq $missing >/dev/null || {
            apt-get update -qq && apt-get install -y -qq $missing >/dev/null; }
    fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

echo "== ruff"
.venv/bin/ruff check pyxs tests examples benchmarks setup.py
echo "== mypy"
.venv/bin/mypy --strict pyxs
echo "== docs"
.venv/bin/sphinx-build -q -W -b html docs docs/_build/html
echo "== tests"
.venv/bin/python -m pytest -n 2 -p no:cacheprovider tests "$@"
echo "== benchmarks (quick: proves the script works, judges no number)"
.venv/bin/python benchmarks/run.py --quick --out "${TMPDIR:-/tmp}/pyxs-bench"
