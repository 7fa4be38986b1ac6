"""Finds or fetches Xen's XenStore daemons, one release at a time.

Releases (:data:`XEN_RELEASES`) and where each comes from:

``4.17`` (the default, :data:`DEFAULT_RELEASE`)
    ``$PYXS_XEN_ROOT`` (a directory holding an unpacked or installed Xen:
    ``usr/lib/xen-*/bin/xenstored`` below it), the system's own
    ``/usr/lib/xen-4.17``, else Debian packages fetched into the cache.
``4.20``
    Debian packages of trixie fetched into the cache (see
    :mod:`pyxs.testing._debian`).
``4.22``
    built from a Xen source tree into the cache (see
    :mod:`pyxs.testing._source`); C xenstored only.

Invariants: what is found is an unpacked root (:class:`XenInstall`) that is
never modified after it was made; binaries whose C library is newer than
the host's bring their own dynamic loader, and :meth:`XenInstall.command`
runs them through it, so nothing of the host is replaced. The hypervisor
stub (:func:`build_stub`) is built with the host's compiler and serves
every release.
"""

import glob
import hashlib
import os
import shutil
import subprocess
from typing import Dict, List, Optional

from . import _debian
from ._cache import ProvisionError, cache_dir, locked
from ._source import SOURCE_RELEASE, build_from_source

__all__ = ["XenInstall", "find_xen", "build_stub", "cache_dir",
           "ProvisionError", "XEN_RELEASES", "DEFAULT_RELEASE",
           "check_release"]

#: Every Xen release whose daemons :func:`find_xen` can provide.
XEN_RELEASES = ("4.17", "4.20", "4.22")

#: The release used when none is named.
DEFAULT_RELEASE = "4.17"

_STUB_SOURCE = os.path.join(os.path.dirname(__file__), "xenstub.c")


def check_release(release: Optional[str]) -> str:
    """``release`` or the default, refused unless it is a known release."""
    if release is None:
        return DEFAULT_RELEASE
    if release not in XEN_RELEASES:
        raise ValueError("unknown Xen release %r; choose one of %s"
                         % (release, ", ".join(XEN_RELEASES)))
    return release


class XenInstall:
    """One Xen installation: its daemons, CLI tools and libraries.

    :param root: the directory holding ``usr/lib/xen-*/bin``.
    :param release: the release slot it fills (default: its own version).
    """

    def __init__(self, root: str, release: Optional[str] = None) -> None:
        self.root = root
        found = sorted(glob.glob(os.path.join(root, "usr/lib/xen-*/bin")))
        if not found:
            raise ProvisionError("no usr/lib/xen-*/bin under %s" % root)
        self.bindir = found[-1]
        self.version = os.path.basename(os.path.dirname(self.bindir))[4:]
        self.release = release or self.version
        libdirs = sorted(glob.glob(os.path.join(root, "usr/lib/*-linux-gnu")))
        #: The dynamic loader of an unpacked C library, when the root
        #: brought its own (a Debian release newer than the host's).
        self.loader: Optional[str] = None
        if root != "/":
            loaders = sorted(glob.glob(os.path.join(
                root, "usr/lib64/ld-linux*.so.*")))
            self.loader = loaders[0] if loaders else None
        if self.loader is None:
            libdirs = [d for d in libdirs
                       if glob.glob(os.path.join(d, "libxenstore.so*"))]
        self.libdirs = libdirs
        self.tooldir = os.path.join(root, "usr/bin")
        self.source: Optional[str] = None
        try:
            with open(os.path.join(root, "SOURCE")) as note:
                self.source = note.read().strip()
        except OSError:
            pass

    def daemon(self, kind: str) -> Optional[str]:
        """Path of ``xenstored`` or ``oxenstored``, if this install has it."""
        path = os.path.join(self.bindir, kind)
        return path if os.access(path, os.X_OK) else None

    def tool(self, name: str) -> Optional[str]:
        """Path of a CLI tool such as ``xenstore-read`` or
        ``test-xenstore``."""
        for directory in (self.tooldir, self.bindir):
            path = os.path.join(directory, name)
            if os.access(path, os.X_OK):
                return path
        return None

    def command(self, path: str, preload: Optional[str] = None) -> List[str]:
        """The start of a command line that runs ``path`` of this install,
        with the shared library ``preload`` loaded first."""
        if self.loader is None:
            return [path]
        command = [self.loader, "--library-path", os.pathsep.join(
            self.libdirs)]
        if preload:
            command += ["--preload", preload]
        return command + [path]

    def tool_command(self, name: str) -> List[str]:
        """The command that runs the tool ``name``; raises if it is
        missing."""
        path = self.tool(name)
        if path is None:
            raise ProvisionError("%s has no %s" % (self, name))
        return self.command(path)

    def environ(self, preload: Optional[str] = None) -> Dict[str, str]:
        """Environment additions that let the unpacked binaries run (and
        load ``preload``)."""
        env: Dict[str, str] = {}
        if self.loader is not None:
            return env   # the loader's own options do it
        if preload:
            env["LD_PRELOAD"] = preload
        if self.libdirs and self.root != "/":
            old = os.environ.get("LD_LIBRARY_PATH")
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                self.libdirs + ([old] if old else []))
        return env

    def __repr__(self) -> str:
        return "XenInstall(%r, release=%r, version=%r)" % (
            self.root, self.release, self.source or self.version)


def find_xen(fetch: bool = True, release: Optional[str] = None
             ) -> XenInstall:
    """Returns an installation of Xen ``release`` (default
    :data:`DEFAULT_RELEASE`), fetching or building it if allowed (else
    only one installed or fetched before)."""
    release = check_release(release)
    if release == SOURCE_RELEASE:
        if not fetch:
            raise ProvisionError("Xen %s is built from source only on "
                                 "request (fetch=True)" % release)
        return XenInstall(build_from_source(), release)
    if release == DEFAULT_RELEASE:
        root = os.environ.get("PYXS_XEN_ROOT")
        if root:
            return XenInstall(root, release)
    if glob.glob("/usr/lib/xen-%s/bin/xenstored" % release):
        return XenInstall("/", release)
    cached = _debian.cached_release(release)
    if cached is not None:
        return XenInstall(cached, release)
    if not fetch:
        raise ProvisionError("no Xen %s installation found%s" % (
            release, "; set PYXS_XEN_ROOT" if release == DEFAULT_RELEASE
            else ""))
    return XenInstall(_debian.fetch_release(release), release)


def build_stub() -> str:
    """Compiles the LD_PRELOAD hypervisor stub once; returns its path."""
    with open(_STUB_SOURCE, "rb") as source:
        digest = hashlib.sha256(source.read()).hexdigest()[:12]
    target = os.path.join(cache_dir(), "xenstub-%s.so" % digest)
    if os.path.exists(target):
        return target
    compiler = os.environ.get("CC") or shutil.which("cc") or \
        shutil.which("gcc")
    if not compiler:
        raise ProvisionError("a C compiler is needed to build the Xen stub "
                             "(install gcc)")
    with locked(target):
        if not os.path.exists(target):
            temporary = target + ".tmp"
            result = subprocess.run(
                [compiler, "-shared", "-fPIC", "-O2", "-o", temporary,
                 _STUB_SOURCE, "-ldl"], capture_output=True, text=True)
            if result.returncode:
                raise ProvisionError("building the Xen stub failed: %s"
                                     % result.stderr.strip()[-500:])
            os.rename(temporary, target)
    return target
