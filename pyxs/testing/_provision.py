"""Finds or fetches Xen's XenStore daemons and builds the hypervisor stub.

Search order: ``$PYXS_XEN_ROOT`` (a directory holding an unpacked or installed
Xen: ``usr/lib/xen-*/bin/xenstored`` below it), the system's own
``/usr/lib/xen-*``, then a cache fed by ``apt-get download`` + ``dpkg -x``.
"""

import fcntl
import glob
import os
import re
import shutil
import subprocess
import tempfile
from typing import List, Optional

__all__ = ["XenInstall", "find_xen", "build_stub", "cache_dir",
           "ProvisionError"]

_STUB_SOURCE = os.path.join(os.path.dirname(__file__), "xenstub.c")


class ProvisionError(RuntimeError):
    """Xen's daemons cannot be found or fetched; the message says why."""


def cache_dir() -> str:
    """Where fetched packages and the built stub live."""
    root = os.environ.get("PYXS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "pyxs")
    os.makedirs(root, exist_ok=True)
    return root


class XenInstall:
    """One Xen installation: its daemons, CLI tools and libraries."""

    def __init__(self, root: str) -> None:
        self.root = root
        found = sorted(glob.glob(os.path.join(root, "usr/lib/xen-*/bin")))
        if not found:
            raise ProvisionError("no usr/lib/xen-*/bin under %s" % root)
        self.bindir = found[-1]
        self.version = os.path.basename(os.path.dirname(self.bindir))[4:]
        libdirs = glob.glob(os.path.join(root, "usr/lib/*-linux-gnu"))
        self.libdirs = [d for d in libdirs
                        if glob.glob(os.path.join(d, "libxenstore.so*"))]
        self.tooldir = os.path.join(root, "usr/bin")

    def daemon(self, kind: str) -> Optional[str]:
        """Path of ``xenstored`` or ``oxenstored``, if this install has it."""
        path = os.path.join(self.bindir, kind)
        return path if os.access(path, os.X_OK) else None

    def tool(self, name: str) -> Optional[str]:
        """Path of a libxenstore CLI tool such as ``xenstore-read``."""
        for directory in (self.tooldir, self.bindir):
            path = os.path.join(directory, name)
            if os.access(path, os.X_OK):
                return path
        return None

    def environ(self) -> dict:
        """Environment additions that let the unpacked binaries run."""
        if not self.libdirs or self.root == "/":
            return {}
        old = os.environ.get("LD_LIBRARY_PATH")
        return {"LD_LIBRARY_PATH": os.pathsep.join(
            self.libdirs + ([old] if old else []))}

    def __repr__(self) -> str:
        return "XenInstall(%r, version=%r)" % (self.root, self.version)


def _locked(path: str):
    handle = open(path + ".lock", "w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def _apt_packages() -> List[str]:
    """Names of the Debian packages holding the daemons and their libraries."""
    try:
        names = subprocess.run(
            ["apt-cache", "pkgnames", "xen-utils-4."], check=True,
            capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ProvisionError("apt-cache is not usable here (%s)" % exc) \
            from None
    utils = sorted((n for n in names if re.fullmatch(r"xen-utils-4\.\d+", n)),
                   key=lambda n: int(n.rsplit(".", 1)[1]))
    if not utils:
        raise ProvisionError(
            "apt knows no xen-utils-4.* package; run 'apt-get update' "
            "(Debian or Ubuntu) or set PYXS_XEN_ROOT")
    wanted = [utils[-1], "xenstore-utils"]
    deps = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends",
         "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
         "--no-enhances"] + wanted,
        capture_output=True, text=True).stdout.split()
    libs = sorted({d for d in deps if d.startswith("libxen")})
    return wanted + libs


def _fetch_into(target: str) -> None:
    work = tempfile.mkdtemp(prefix="download-", dir=os.path.dirname(target))
    try:
        packages = _apt_packages()
        result = subprocess.run(["apt-get", "download", "-q"] + packages,
                                cwd=work, capture_output=True, text=True)
        if result.returncode:
            raise ProvisionError("apt-get download %s failed: %s" % (
                " ".join(packages), result.stderr.strip()[-500:]))
        unpacked = os.path.join(work, "root")
        for deb in sorted(glob.glob(os.path.join(work, "*.deb"))):
            subprocess.run(["dpkg", "-x", deb, unpacked], check=True)
        os.rename(unpacked, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fetched() -> XenInstall:
    target = os.path.join(cache_dir(), "xen-root")
    with _locked(target):
        if not os.path.isdir(target):
            _fetch_into(target)
    return XenInstall(target)


def find_xen(fetch: bool = True) -> XenInstall:
    """Returns a usable Xen installation, fetching one if allowed."""
    root = os.environ.get("PYXS_XEN_ROOT")
    if root:
        return XenInstall(root)
    if glob.glob("/usr/lib/xen-*/bin/xenstored"):
        return XenInstall("/")
    if not fetch:
        raise ProvisionError("no Xen installation found; set PYXS_XEN_ROOT")
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise ProvisionError(
            "Xen's daemons are not installed and this is not a Debian-like "
            "system: set PYXS_XEN_ROOT to an unpacked xen-utils package")
    return _fetched()


def build_stub() -> str:
    """Compiles the LD_PRELOAD hypervisor stub once; returns its path."""
    with open(_STUB_SOURCE, "rb") as source:
        import hashlib
        digest = hashlib.sha256(source.read()).hexdigest()[:12]
    target = os.path.join(cache_dir(), "xenstub-%s.so" % digest)
    if os.path.exists(target):
        return target
    compiler = os.environ.get("CC") or shutil.which("cc") or \
        shutil.which("gcc")
    if not compiler:
        raise ProvisionError("a C compiler is needed to build the Xen stub "
                             "(install gcc)")
    with _locked(target):
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
