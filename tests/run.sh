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
.venv/bin/sphinx-build -q -n -W -b html docs docs/_build/html
echo "== tests"
.venv/bin/python -m pytest -n 2 -p no:cacheprovider tests "$@"
echo "== packaging: sdist and wheel, then the sdist's tests"
# The build must print no warning (byte-compiling left on, or setuptools
# warns that it is off). distcheck.py: the wheel holds py.typed, xenstub.c
# and the licenses; the sdist every file git tracks. Then the unpacked
# sdist's tests run with its own source, as a packager runs them, in a
# throwaway venv holding the wheel and the test extra: every test module
# and helper, with the daemon-parametrised tests against the embedded
# daemon only (PYXS_TEST_DAEMONS), which keeps this step to about a minute.
dist=$(mktemp -d "${TMPDIR:-/tmp}/pyxs-dist.XXXXXX")
trap 'rm -rf "$dist"' EXIT
if ! env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m build -o "$dist" . \
        >"$dist/build.log" 2>&1; then
    cat "$dist/build.log"; exit 1
fi
if grep -iE 'warn|deprecat' "$dist/build.log" | grep -vE '^(copying|adding) '
then
    echo "python -m build printed warnings (above)"; exit 1
fi
.venv/bin/python tests/distcheck.py "$dist"
# The unpacked sdist has no ../shared: name the Xen source the checkout uses.
PYXS_XEN_SOURCE=$(.venv/bin/python -c \
    'from pyxs.testing._source import find_source; print(find_source())')
export PYXS_XEN_SOURCE
"$PYTHON" -m venv "$dist/venv"
"$dist/venv/bin/python" -m pip install -q --disable-pip-version-check \
    "$(ls "$dist"/pyxs-*.whl)[test]"
mkdir "$dist/src" && tar xzf "$dist"/pyxs-*.tar.gz -C "$dist/src"
# From outside any source tree the wheel's pyxs runs: its console script,
# and Xen's C xenstored under the stub compiled from the wheel's xenstub.c.
(cd "$dist" && venv/bin/pyxs --version && venv/bin/python -I -c '
from pyxs.testing import XenStoreDaemon
with XenStoreDaemon("xenstored").start() as daemon, daemon.client() as c:
    c.write(b"/wheel", b"ok"); assert c.read(b"/wheel") == b"ok"
print("wheel: pyxs.testing ran C xenstored")')
(cd "$dist"/src/pyxs-* && PYXS_TEST_DAEMONS=embedded \
    "$dist/venv/bin/python" -m pytest -q -n 2 -p no:cacheprovider tests)
echo "== the oldest and newest Python: the sdist's tests on each found"
# pyxs supports Python 3.8 and later. Where the machine has the oldest and
# the newest (pyenv's here), each runs the unpacked sdist's tests as above,
# with the wheel installed in a venv of its own.
others=0
for version in 3.8 3.13; do
    interpreter=$(command -v "python$version" 2>/dev/null || true)
    if [ -z "$interpreter" ] || ! "$interpreter" -c pass 2>/dev/null; then
        # pyenv's shims refuse versions not selected: take the install.
        interpreter=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version".*/bin/"python$version" 2>/dev/null | tail -n 1)
    fi
    if [ -z "$interpreter" ] || ! "$interpreter" -c pass 2>/dev/null; then
        echo "python$version: not on this machine, not tested"
        continue
    fi
    echo "python$version: $interpreter"
    "$interpreter" -m venv "$dist/venv$version"
    "$dist/venv$version/bin/python" -m pip install -q \
        --disable-pip-version-check "$(ls "$dist"/pyxs-*.whl)[test]"
    (cd "$dist"/src/pyxs-* && PYXS_TEST_DAEMONS=embedded \
        "$dist/venv$version/bin/python" -m pytest -q -n 2 \
        -p no:cacheprovider tests)
    others=$((others + 1))
done
echo "tested on $others more Python version(s)"
echo "== benchmarks (quick: proves the script works, judges no number)"
.venv/bin/python benchmarks/run.py --quick --out "${TMPDIR:-/tmp}/pyxs-bench"
