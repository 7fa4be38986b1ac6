"""Fetches Xen's daemons from Debian packages, without installing them.

A release's packages (xen-utils-<release>, xenstore-utils and the libxen*
libraries) come from the machine's own apt when it knows them (Debian 12
has Xen 4.17), otherwise from the Debian release that ships them (trixie
for 4.20) through a private apt configuration: its own sources list, lists
and cache directories in pyxs's cache, passed to ``apt-get`` with ``-o``
options. The machine's apt sources, lists and packages are never touched
and nothing is installed; ``apt-get download`` fetches the ``.deb`` files
and ``dpkg -x`` unpacks them.

A release from another Debian release also brings that release's C
library (libc6): its binaries run through its own dynamic loader (see
:meth:`pyxs.testing.XenInstall.command`).

Invariants: each unpacked root is a cache entry (``xen-root`` for the
host's 4.17, ``xen-<release>-<suite>`` otherwise), made complete under its
lock and renamed into place; the private apt state lives in
``apt-<suite>``, is guarded by the same lock as the entry it feeds and is
removed once that entry is complete.
"""

import glob
import os
import re
import shutil
import subprocess
import tempfile
from typing import List, Optional, Tuple

from ._cache import ProvisionError, cache_dir, locked

__all__ = ["fetch_release", "DEBIAN_SUITES"]

#: The Debian release that ships each Xen release.
DEBIAN_SUITES = {"4.17": "bookworm", "4.20": "trixie"}

_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
_DEFAULT_MIRROR = "http://deb.debian.org/debian"

# The libraries xen-utils and xenstore-utils link, by package; the host
# asks apt-cache instead, but the private suite's dependencies would drag
# in half of that release.
_LIBRARIES = ["libxenstore4", "libxenmisc%s", "libxenevtchn1", "libxencall1",
              "libxenforeignmemory1", "libxengnttab1", "libxentoolcore1",
              "libxentoollog1", "libxendevicemodel1", "libxenhypfs1"]


def _roots(release: str) -> Tuple[str, str]:
    """Where the host's and a private suite's packages get unpacked."""
    host = os.path.join(cache_dir(), "xen-root" if release == "4.17"
                        else "xen-%s-root" % release)
    private = os.path.join(cache_dir(), "xen-%s-%s" % (
        release, DEBIAN_SUITES[release]))
    return host, private


def cached_release(release: str) -> Optional[str]:
    """The unpacked root of Xen ``release``'s packages if it was fetched
    before, else None (nothing is fetched)."""
    if release not in DEBIAN_SUITES:
        return None
    for entry in _roots(release):
        if os.path.isdir(entry):
            return entry
    return None


def fetch_release(release: str) -> str:
    """The unpacked root of Xen ``release``'s packages, fetched if needed."""
    if release not in DEBIAN_SUITES:
        raise ProvisionError("no Debian release ships Xen %s" % release)
    host, private = _roots(release)
    cached = cached_release(release)
    if cached is not None:
        return cached
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise ProvisionError(
            "Xen %s's daemons are not installed and this is not a "
            "Debian-like system (no apt-get and dpkg)%s" % (release, (
                ": set PYXS_XEN_ROOT to an unpacked xen-utils package"
                if release == "4.17" else "")))
    if _host_knows("xen-utils-" + release):
        with locked(host):
            if not os.path.isdir(host):
                _unpack_into(host, _download(_host_packages(release), []))
        return host
    with locked(private):
        if not os.path.isdir(private):
            options = _private_apt(DEBIAN_SUITES[release])
            suite = DEBIAN_SUITES[release]
            names = ["xen-utils-" + release, "xenstore-utils", "libc6"] + [
                name % release if "%" in name else name
                for name in _LIBRARIES]
            _unpack_into(private, _download(
                ["%s/%s" % (name, suite) for name in names], options))
            # Its lists would be stale by the next fetch: drop them.
            shutil.rmtree(_apt_dir(suite), ignore_errors=True)
    return private


def _apt_dir(suite: str) -> str:
    return os.path.join(cache_dir(), "apt-" + suite)


def _host_knows(package: str) -> bool:
    try:
        return subprocess.run(
            ["apt-cache", "show", package], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        return False


def _host_packages(release: str) -> List[str]:
    """The host's packages holding the daemons and their libraries."""
    wanted = ["xen-utils-" + release, "xenstore-utils"]
    deps = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends",
         "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
         "--no-enhances"] + wanted,
        capture_output=True, text=True).stdout.split()
    libs = sorted({d for d in deps if d.startswith("libxen")})
    return wanted + libs


def _mirror() -> str:
    """The Debian mirror the machine's apt already uses."""
    files = ["/etc/apt/sources.list"] + sorted(
        glob.glob("/etc/apt/sources.list.d/*.list") +
        glob.glob("/etc/apt/sources.list.d/*.sources"))
    for path in files:
        try:
            with open(path) as handle:
                text = handle.read()
        except OSError:
            continue
        url: str
        for url in re.findall(r"(?m)^\s*(?:deb\s+(?:\[[^]]*\]\s+)?|URIs:\s*)"
                              r"(https?://\S+)", text):
            if url.rstrip("/").endswith("/debian"):
                return url.rstrip("/")
    return _DEFAULT_MIRROR


def _private_apt(suite: str) -> List[str]:
    """apt options for a private configuration serving ``suite`` only,
    with fresh package lists."""
    if not os.path.exists(_KEYRING):
        raise ProvisionError("fetching Debian %s's packages needs Debian's "
                             "archive keys (%s; package "
                             "debian-archive-keyring)" % (suite, _KEYRING))
    base = _apt_dir(suite)
    lists = os.path.join(base, "lists")
    cache = os.path.join(base, "cache")
    for directory in (os.path.join(lists, "partial"),
                      os.path.join(cache, "archives", "partial")):
        os.makedirs(directory, exist_ok=True)
    sources = os.path.join(base, "sources.list")
    with open(sources, "w") as handle:
        handle.write("deb [signed-by=%s] %s %s main\n" % (
            _KEYRING, _mirror(), suite))
    options = []
    for setting in ("Dir::Etc::sourcelist=" + sources,
                    "Dir::Etc::sourceparts=/dev/null",
                    "Dir::Etc::preferences=/dev/null",
                    "Dir::Etc::preferencesparts=/dev/null",
                    "Dir::State::Lists=" + lists,
                    "Dir::Cache=" + cache,
                    "Acquire::Languages=none"):
        options += ["-o", setting]
    if os.geteuid() == 0:
        # The download sandbox user cannot enter root's home directory.
        options += ["-o", "APT::Sandbox::User=root"]
    result = subprocess.run(["apt-get", "update", "-q"] + options,
                            stdin=subprocess.DEVNULL, capture_output=True,
                            text=True)
    if result.returncode:
        raise ProvisionError("apt-get update of a private sources list for "
                             "Debian %s failed: %s" % (
                                 suite, result.stderr.strip()[-500:]))
    return options


def _download(packages: List[str], options: List[str]) -> str:
    work = tempfile.mkdtemp(prefix="download-", dir=cache_dir())
    result = subprocess.run(["apt-get", "download", "-q"] + options +
                            packages, cwd=work, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True)
    if result.returncode:
        shutil.rmtree(work, ignore_errors=True)
        raise ProvisionError("apt-get download %s failed: %s" % (
            " ".join(packages), result.stderr.strip()[-500:]))
    return work


def _unpack_into(target: str, work: str) -> None:
    """Unpacks every .deb of ``work`` into ``target``; removes ``work``."""
    try:
        unpacked = os.path.join(work, "root")
        for deb in sorted(glob.glob(os.path.join(work, "*.deb"))):
            subprocess.run(["dpkg", "-x", deb, unpacked], check=True)
        os.rename(unpacked, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
