"""pyxs 0.4.1 and its own test modules, fetched once into the cache.

pyxs 0.4.1's wheel comes from PyPI (``pip download``); its test modules,
which no PyPI file carries, come from Debian's source package of pyxs
(``apt-get source``: a snapshot of the same code, 0.4.2~git20190115, whose
library differs from 0.4.1 only in comments, in dropping the unused
``_server`` module and in letting ``execute_command`` take an empty
argument). Both are checked against pinned SHA-256 digests and unpacked
under ``<cache>/pyxs-0.4.1``, behind a file lock, so parallel test
processes fetch them once. Nothing here is a dependency of pyxs.
"""

import fcntl
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from typing import Dict, List, Optional, Tuple

from pyxs.testing import ProvisionError
from pyxs.testing._provision import cache_dir

WHEEL = "pyxs-0.4.1-py2.py3-none-any.whl"
WHEEL_SHA256 = \
    "ae6016b05e7a99d0a4e8b3eb83bbc32362d1b013498d64c5fb1b429f43bb049f"
SOURCE_PACKAGE = "python-pyxs"
ORIG_SHA256 = \
    "3666216d5452fa52263f147cf8a57dd089002dc48909b9806286e743d92c7842"
_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class Pyxs04:
    """Where the fetched parts are: ``lib`` holds pyxs 0.4.1's package,
    ``tests`` pyxs's ``tests`` package of that release."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.lib = os.path.join(root, "lib")
        self.tests = os.path.join(root, "tests")


def _sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _run(command: List[str], cwd: str, what: str) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL)
    if result.returncode:
        raise ProvisionError("%s failed (%s): %s" % (
            what, " ".join(command[:4]),
            (result.stderr or result.stdout).strip()[-600:]))


def _fetch_wheel(work: str) -> None:
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
          "--only-binary", ":all:", "--disable-pip-version-check",
          "pyxs==0.4.1", "-d", work], work, "fetching pyxs 0.4.1 from PyPI")
    wheel = os.path.join(work, WHEEL)
    if not os.path.exists(wheel) or _sha256(wheel) != WHEEL_SHA256:
        raise ProvisionError("PyPI's %s is missing or not the one pinned"
                             % WHEEL)
    with zipfile.ZipFile(wheel) as archive:  # a pure-Python wheel
        archive.extractall(os.path.join(work, "lib"))


def _debian_mirror() -> Tuple[str, str]:
    """The Debian mirror apt already uses and this system's codename."""
    codename = ""
    with open("/etc/os-release") as handle:
        for line in handle:
            if line.startswith("VERSION_CODENAME="):
                codename = line.split("=", 1)[1].strip().strip('"')
    texts = []
    for path in ["/etc/apt/sources.list"] + sorted(
            glob.glob("/etc/apt/sources.list.d/*.list") +
            glob.glob("/etc/apt/sources.list.d/*.sources")):
        try:
            with open(path) as handle:
                texts.append(handle.read())
        except OSError:
            continue
    for uri in re.findall(r"https?://\S+", "\n".join(texts)):
        if "debian" in uri and "security" not in uri and \
                "snapshot" not in uri:
            return uri, codename or "bookworm"
    return "http://deb.debian.org/debian", codename or "bookworm"


def _fetch_tests(work: str) -> None:
    if not shutil.which("apt-get"):
        raise ProvisionError("pyxs 0.4's tests come from Debian's source "
                             "package %s: apt-get is needed" % SOURCE_PACKAGE)
    mirror, codename = _debian_mirror()
    apt = os.path.join(work, "apt")
    for sub in ("lists/partial", "cache/archives/partial"):
        os.makedirs(os.path.join(apt, sub))
    sources = os.path.join(apt, "sources.list")
    with open(sources, "w") as handle:
        handle.write("deb-src [signed-by=%s] %s %s main\n"
                     % (_KEYRING, mirror, codename))
    options = ["-o", "Dir::Etc::sourcelist=" + sources,
               "-o", "Dir::Etc::sourceparts=/dev/null",
               "-o", "Dir::State::Lists=" + os.path.join(apt, "lists"),
               "-o", "Dir::Cache=" + os.path.join(apt, "cache")]
    _run(["apt-get", "-qq"] + options + ["update"], work,
         "reading Debian's source lists")
    # The orig tarball is all that is needed; apt may fail on the Debian
    # part when a mirror lags, so its exit status is not trusted: the
    # pinned digest of the tarball is.
    subprocess.run(["apt-get", "-qq"] + options +
                   ["source", "--download-only", SOURCE_PACKAGE], cwd=work,
                   capture_output=True, stdin=subprocess.DEVNULL)
    found = glob.glob(os.path.join(work, "*.orig.tar.gz"))
    if not found or _sha256(found[0]) != ORIG_SHA256:
        raise ProvisionError("Debian's %s source (%s %s) is missing or not "
                             "the one pinned" % (SOURCE_PACKAGE, mirror,
                                                 codename))
    with tarfile.open(found[0]) as archive:
        for member in archive.getmembers():
            parts = member.name.split("/")
            if len(parts) == 3 and parts[1] == "tests" and member.isfile():
                member.name = parts[2]
                archive.extract(member, os.path.join(work, "tests"))


def provision() -> Pyxs04:
    """Fetches pyxs 0.4.1 and its tests once; returns where they are."""
    root = os.path.join(cache_dir(), "pyxs-0.4.1")
    with open(root + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(root, "complete")):
            work = tempfile.mkdtemp(prefix="pyxs-0.4.1-",
                                    dir=os.path.dirname(root))
            try:
                _fetch_wheel(work)
                _fetch_tests(work)
                open(os.path.join(work, "complete"), "w").close()
                shutil.rmtree(root, ignore_errors=True)
                os.rename(work, root)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return Pyxs04(root)


# -- running pyxs 0.4's tests -------------------------------------------------

#: A pytest plugin that runs 0.4's tests marked ``@virtualized`` (those
#: needing a Xen host) against the daemon named by XENSTORED_PATH.
_VIRTUALIZED_PLUGIN = '''\
import pytest
import tests  # pyxs 0.4's tests package: its marker decides at import time
tests.virtualized = pytest.mark.usefixtures()
'''

#: A pytest plugin that ends the process once pytest is done (the report
#: written): threads that 0.4's tests start and leave blocked must not
#: keep it alive.
_EXIT_PLUGIN = '''\
import os
import sys

import pytest


@pytest.hookimpl(trylast=True)  # a plain name: Python 3.8's decorators
def pytest_unconfigure(config):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
'''


def run_suite(suite: Pyxs04, pythonpath: List[str], env: Dict[str, str],
              virtualized: bool, timeout: float = 180.0
              ) -> Tuple[Dict[str, str], str]:
    """Runs 0.4's test modules with ``pythonpath`` first on sys.path.

    :returns: each test's outcome (passed, failed, skipped, error) by id,
        and pytest's output.
    """
    import xml.etree.ElementTree as ElementTree
    run = tempfile.mkdtemp(prefix="pyxs04-run-")
    try:
        shutil.copytree(suite.tests, os.path.join(run, "tests"))
        with open(os.path.join(run, "pyxs04_virtualized.py"), "w") as f:
            f.write(_VIRTUALIZED_PLUGIN)
        with open(os.path.join(run, "pyxs04_exit.py"), "w") as f:
            f.write(_EXIT_PLUGIN)
        report = os.path.join(run, "report.xml")
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                   "-p", "no:xdist", "-p", "no:randomly", "-q", "-rfEs",
                   "-p", "pyxs04_exit", "--junitxml", report,
                   "-o", "junit_family=xunit1"]
        if virtualized:
            command += ["-p", "pyxs04_virtualized"]
        child_env = dict(os.environ)
        child_env.update(env)
        child_env["PYTHONPATH"] = os.pathsep.join([run] + pythonpath)
        child_env["PYTHONDONTWRITEBYTECODE"] = "1"
        try:
            result = subprocess.run(command + ["tests"], cwd=run,
                                    env=child_env, capture_output=True,
                                    text=True, timeout=timeout,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError("pyxs 0.4's tests did not finish within "
                                 "%g s:\n%s" % (timeout, exc.stdout)) from None
        output = result.stdout + result.stderr
        if not os.path.exists(report):
            raise AssertionError("pyxs 0.4's tests did not run:\n" + output)
        outcomes: Dict[str, str] = {}
        for case in ElementTree.parse(report).iter("testcase"):
            name = "%s::%s" % (case.get("classname"), case.get("name"))
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = "failed"
                elif child.tag == "skipped" and outcome == "passed":
                    outcome = "skipped"
            outcomes[name] = outcome
        return outcomes, output
    finally:
        shutil.rmtree(run, ignore_errors=True)


def failures(outcomes: Dict[str, str]) -> List[str]:
    return sorted(name for name, outcome in outcomes.items()
                  if outcome == "failed")


def binding_path(xen_root: str) -> Optional[str]:
    """xen.lowlevel.xs's directory, if it fits this interpreter."""
    if sys.implementation.name != "cpython" or \
            sys.version_info[:2] != (3, 11):
        return None
    found = glob.glob(os.path.join(
        xen_root, "usr/lib/xen-*/lib/python/xen/lowlevel/xs.cpython-311-*"))
    return os.path.dirname(os.path.dirname(os.path.dirname(found[0]))) \
        if found else None
