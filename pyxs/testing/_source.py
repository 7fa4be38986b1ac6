"""Builds Xen's C xenstored (and its tools) from a Xen source tree.

No Debian release ships a Xen newer than 4.20, so the newest daemon comes
from source: a tarball or a directory holding (a part of) Xen's tree, named
by ``$PYXS_XEN_SOURCE`` or, for pyxs's own CI, the tarball found next to
the repository (``../shared/xen-4.22/xen-src.tar.xz``).

Invariants: a source is built at most once per machine: the result goes
into the cache as ``xen-source-<hash>`` (hash of the tarball, or of every
file of the tree but ``.git``), under that entry's lock, built out of tree
in a scratch directory that is removed afterwards, so the named source is
never written to. The entry is a root laid out like an unpacked Debian
package (``usr/lib/xen-4.22/bin``, ``usr/bin``, ``usr/lib/<arch>-linux-gnu``)
for :class:`pyxs.testing.XenInstall`. A failed build leaves no entry, only
its log (``xen-source-<hash>.log``), which the error message names.
"""

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
from typing import Dict, List, Optional

from ._cache import ProvisionError, cache_dir, file_digest, locked

__all__ = ["SOURCE_RELEASE", "find_source", "build_from_source",
           "BUILD_DEPENDENCIES"]

#: The release slot a source build fills.
SOURCE_RELEASE = "4.22"

#: Debian packages the build needs (what ``tests/run.sh`` installs).
BUILD_DEPENDENCIES = ("build-essential", "bison", "flex", "python3",
                      "python3-dev", "uuid-dev", "libyajl-dev", "zlib1g-dev",
                      "pkg-config")

_TARBALL = os.path.join("shared", "xen-4.22", "xen-src.tar.xz")

_CONFIGURE = [
    "--prefix=/usr", "--disable-xen", "--disable-docs", "--disable-stubdom",
    "--disable-monitors", "--disable-ocamltools", "--disable-xsmpolicy",
    "--disable-seabios", "--disable-golang", "--disable-pygrub",
    "--disable-pvshim", "--disable-ipxe", "--disable-rombios",
    "--disable-werror", "--with-system-qemu=/bin/false",
    "--with-xenstored=xenstored",
    # configure insists on the ACPI compiler, which nothing built here uses.
    "IASL=/bin/true",
]

# In dependency order; the last builds only the multi-call `xenstore`
# client (the directory's default target needs libraries left out).
_LIBRARIES = ["toolcore", "toollog", "evtchn", "gnttab", "call",
              "foreignmemory", "devicemodel", "manage", "store"]
_MAKE_DIRS = (["tools/include"] + ["tools/libs/" + n for n in _LIBRARIES] +
              ["tools/xenstored", "tools/tests/xenstore"])

# Names under which the `xenstore` binary acts as xenstore-read etc.
_CLIENTS = ["xenstore-exists", "xenstore-list", "xenstore-read",
            "xenstore-rm", "xenstore-chmod", "xenstore-write", "xenstore-ls",
            "xenstore-watch"]


def find_source() -> str:
    """The Xen source to build: ``$PYXS_XEN_SOURCE`` or the shared one."""
    named = os.environ.get("PYXS_XEN_SOURCE")
    if named:
        if not os.path.exists(named):
            raise ProvisionError("PYXS_XEN_SOURCE names %s, which does not "
                                 "exist" % named)
        return os.path.abspath(named)
    # A checkout's root is the parent of the pyxs package, or the working
    # directory when pyxs is installed (tox runs the tests from the
    # checkout); the shared folder sits beside it (CI) or beside the
    # folder holding it.
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    tried: List[str] = []
    for root in (package_root, os.getcwd()):
        for base in (os.path.dirname(root),
                     os.path.dirname(os.path.dirname(root))):
            candidate = os.path.join(base, _TARBALL)
            if os.path.isfile(candidate):
                return candidate
            if candidate not in tried:
                tried.append(candidate)
    raise ProvisionError(
        "Xen %s is built from source, and none was found: set "
        "PYXS_XEN_SOURCE to a Xen source tree or tarball (looked for %s)"
        % (SOURCE_RELEASE, " and ".join(tried)))


@functools.lru_cache(maxsize=None)
def _tree_digest(top: str) -> str:
    digest = hashlib.sha256()
    for directory, subdirs, files in os.walk(top):
        subdirs[:] = sorted(d for d in subdirs if d != ".git")
        for name in sorted(files):
            path = os.path.join(directory, name)
            digest.update(os.path.relpath(path, top).encode() + b"\0")
            if os.path.islink(path):
                digest.update(b"->" + os.readlink(path).encode())
            elif os.path.isfile(path):
                digest.update(file_digest(path).encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def _file_key(path: str, size: int, mtime: int) -> str:
    return file_digest(path)


def source_digest(source: str) -> str:
    """The hash that keys a source's build in the cache."""
    if os.path.isdir(source):
        return _tree_digest(source)
    stat = os.stat(source)
    return _file_key(source, stat.st_size, stat.st_mtime_ns)


def build_from_source(source: Optional[str] = None) -> str:
    """Builds ``source`` (default: :func:`find_source`) once; returns the
    root of the result in the cache."""
    source = source or find_source()
    target = os.path.join(cache_dir(), "xen-source-%s"
                          % source_digest(source)[:16])
    if os.path.isdir(target):
        return target
    with locked(target):
        if not os.path.isdir(target):
            _build_into(source, target)
    return target


def _unpack(source: str, into: str) -> str:
    """Puts a copy of the source tree below ``into``; returns its top."""
    if os.path.isdir(source):
        top = os.path.join(into, "xen")
        shutil.copytree(source, top, symlinks=True,
                        ignore=shutil.ignore_patterns(".git"))
        return top
    try:
        with tarfile.open(source) as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extractall(into, filter="data")
            else:  # Python < 3.12 without the backported filters
                archive.extractall(into)
    except (OSError, tarfile.TarError) as exc:
        raise ProvisionError("cannot unpack the Xen source %s: %s"
                             % (source, exc)) from None
    for directory, subdirs, files in os.walk(into):
        if "configure" in files and "tools" in subdirs:
            return directory
        if directory.count(os.sep) - into.count(os.sep) >= 2:
            subdirs[:] = []
    raise ProvisionError("%s holds no Xen source tree (no configure next "
                         "to tools/)" % source)


class _Steps:
    """Runs the build's commands, all output into one log."""

    def __init__(self, log: str, source: str) -> None:
        self.log = log
        self.source = source
        self.env = dict(os.environ)
        # The build must not pick up a stub or libraries meant for a daemon.
        for name in ("LD_PRELOAD", "LD_LIBRARY_PATH", "MAKEFLAGS"):
            self.env.pop(name, None)

    def run(self, what: str, command: List[str], cwd: str) -> None:
        with open(self.log, "ab") as log:
            log.write(("\n$ %s\n" % " ".join(command)).encode())
            log.flush()
            try:
                status = subprocess.call(command, cwd=cwd, env=self.env,
                                         stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
            except OSError as exc:
                raise ProvisionError("building Xen's xenstored from %s: "
                                     "cannot run %s: %s" % (
                                         self.source, command[0], exc))
        if status:
            raise ProvisionError(
                "building Xen's xenstored from %s failed at %s (status %d; "
                "build dependencies on Debian: %s). Log: %s\n%s" % (
                    self.source, what, status, " ".join(BUILD_DEPENDENCIES),
                    self.log, _tail(self.log)))


def _tail(path: str, size: int = 800) -> str:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - size))
        return handle.read().decode("utf-8", "replace").strip()


def _build_into(source: str, target: str) -> None:
    log = target + ".log"
    if os.path.exists(log):
        os.unlink(log)
    work = tempfile.mkdtemp(prefix="build-", dir=os.path.dirname(target))
    try:
        tree = _unpack(source, os.path.join(work, "src"))
        steps = _Steps(log, source)
        steps.run("configure", ["./configure"] + _CONFIGURE, tree)
        jobs = "-j%d" % max(1, min(os.cpu_count() or 1, 8))
        for directory in _MAKE_DIRS:
            steps.run("make -C " + directory,
                      ["make", jobs, "-C", directory], tree)
        steps.run("make -C tools/xs-clients xenstore",
                  ["make", jobs, "-C", "tools/xs-clients", "xenstore"], tree)
        root = os.path.join(work, "root")
        _install(tree, root)
        os.rename(root, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os.unlink(log)


def _install(tree: str, root: str) -> None:
    bindir = os.path.join(root, "usr", "lib", "xen-%s" % SOURCE_RELEASE,
                          "bin")
    tooldir = os.path.join(root, "usr", "bin")
    libdir = os.path.join(root, "usr", "lib",
                          "%s-linux-gnu" % platform.machine())
    for directory in (bindir, tooldir, libdir):
        os.makedirs(directory)
    shutil.copy2(os.path.join(tree, "tools/xenstored/xenstored"), bindir)
    shutil.copy2(os.path.join(tree, "tools/tests/xenstore/test-xenstore"),
                 bindir)
    shutil.copy2(os.path.join(tree, "tools/xs-clients/xenstore"), tooldir)
    for name in _CLIENTS:
        os.symlink("xenstore", os.path.join(tooldir, name))
    for library in _LIBRARIES:
        directory = os.path.join(tree, "tools", "libs", library)
        for name in sorted(os.listdir(directory)):
            if name.startswith("lib") and ".so" in name:
                shutil.copy2(os.path.join(directory, name), libdir,
                             follow_symlinks=False)
    with open(os.path.join(root, "SOURCE"), "w") as note:
        note.write("%s\n" % _describe(tree))


def _describe(tree: str) -> str:
    """The source's own version, e.g. ``4.23-unstable``, for the record."""
    fields: Dict[str, str] = {}
    try:
        with open(os.path.join(tree, "xen", "Makefile")) as makefile:
            for line in makefile:
                parts = line.replace("?=", "=").split("=", 1)
                words = parts[0].split()
                if len(parts) == 2 and words and words[-1].startswith(
                        "XEN_") and words[-1].endswith("VERSION"):
                    fields[words[-1]] = parts[1].strip()
    except OSError:
        return "unknown version"
    extra = fields.get("XEN_EXTRAVERSION", "").split("$", 1)[0]
    return "%s.%s%s" % (fields.get("XEN_VERSION", "?"),
                        fields.get("XEN_SUBVERSION", "?"), extra)
