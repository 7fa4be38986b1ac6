"""The scripts in examples/ run against real daemons and print what they say.

Each example runs as a subprocess, found by nothing but ``XENSTORED_PATH``,
exactly as a user would start it.
"""

import os
import subprocess
import sys
from typing import Dict, List

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(TOP, "examples")
RUN_TIMEOUT = 60  # seconds; a hung example fails instead of blocking


def example_env(daemon) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("XENSTORED_RUNDIR", None)
    env["XENSTORED_PATH"] = daemon.socket_path
    env["PYTHONPATH"] = TOP
    return env


def example_command(name: str, *args: str) -> List[str]:
    return [sys.executable, os.path.join(EXAMPLES, name), *args]


def run_example(daemon, name: str, *args: str,
                cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run(example_command(name, *args),
                          env=example_env(daemon), cwd=cwd,
                          capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)


def test_helloworld(daemon, client, tmp_path):
    result = run_example(daemon, "helloworld.py", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "connected to %s" % daemon.socket_path,
        "wrote /examples/helloworld/greeting and "
        "/examples/helloworld/answer",
        "read /examples/helloworld/greeting = b'Hello, XenStore!'",
        "list /examples/helloworld = answer, greeting",
        "read /examples/helloworld/missing with a default = b'(none)'",
        "deleted /examples/helloworld; exists: False",
    ]
    assert not client.exists(b"/examples/helloworld")


def test_helloworld_without_daemon(daemon, tmp_path):
    env = example_env(daemon)
    env["XENSTORED_PATH"] = str(tmp_path / "no-such-socket")
    result = subprocess.run(example_command("helloworld.py"), env=env,
                            cwd=str(tmp_path), capture_output=True,
                            text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot connect to XenStore at "
                                    + env["XENSTORED_PATH"])


@pytest.fixture
def tree(client):
    client.write(b"/t/vm/name", b"guest")
    client.write(b"/t/vm/state", b"running")
    client.write(b"/t/vm/device/vif/0", b"")
    client.write(b"/t/note", b'say "hi"')
    return client


def ls_output(daemon, *args: str, cwd: str) -> List[str]:
    result = run_example(daemon, "ls.py", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def sorted_siblings(lines: List[str]) -> List[str]:
    # Daemons list children in different orders: compare each level sorted.
    def key(index: int) -> List[str]:
        line = lines[index]
        depth = (len(line) - len(line.lstrip(" "))) // 2
        path = [line.strip()]
        for previous in reversed(lines[:index]):
            previous_depth = (len(previous) - len(previous.lstrip(" "))) // 2
            if previous_depth < depth:
                path.insert(0, previous.strip())
                depth = previous_depth
        return path
    return [lines[i] for i in sorted(range(len(lines)), key=key)]


def test_ls(daemon, tree, tmp_path):
    lines = ls_output(daemon, "/t", cwd=str(tmp_path))
    assert sorted_siblings(lines) == [
        '/t = ""',
        '  note = "say \\"hi\\""',
        '  vm = ""',
        '    device = ""',
        '      vif = ""',
        '        0 = ""',
        '    name = "guest"',
        '    state = "running"',
    ]


def test_ls_depth_prunes(daemon, tree, tmp_path):
    lines = ls_output(daemon, "/t", "--depth", "1", cwd=str(tmp_path))
    assert sorted(lines) == ['  note = "say \\"hi\\""', '  vm = ""',
                             '/t = ""']


def test_ls_root_by_default(daemon, tree, tmp_path):
    lines = ls_output(daemon, cwd=str(tmp_path))
    assert lines[0] == '/ = ""'
    assert '  t = ""' in lines
    assert '    vm = ""' in lines
    assert '      name = "guest"' in lines


def test_ls_missing_path(daemon, client, tmp_path):
    result = run_example(daemon, "ls.py", "/nowhere", cwd=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == "error: /nowhere does not exist\n"


def test_transaction_counts(daemon, client, tmp_path):
    first = run_example(daemon, "transaction.py", cwd=str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert first.stdout == "/examples/counter = 1\n"
    more = run_example(daemon, "transaction.py", "--times", "4",
                       cwd=str(tmp_path))
    assert more.stdout == "/examples/counter = 5\n"
    assert client.read(b"/examples/counter") == b"5"


def test_transaction_loses_no_increment(daemon, client, tmp_path):
    # Concurrent writers conflict; run_transaction must redo, never lose.
    writers, times = 3, 20
    processes = [subprocess.Popen(
        example_command("transaction.py", "/race", "--times", str(times)),
        env=example_env(daemon), cwd=str(tmp_path), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for _ in range(writers)]
    outputs = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=RUN_TIMEOUT)
            assert process.returncode == 0, err
            outputs.append(out)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert client.read(b"/race") == b"%d" % (writers * times)
    assert "/race = %d\n" % (writers * times) in outputs


class MonitorProcess:
    """examples/monitor.py, with its output read one line at a time."""

    def __init__(self, daemon, cwd: str, *args: str) -> None:
        self.process = subprocess.Popen(
            example_command("monitor.py", *args), env=example_env(daemon),
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)

    def line(self) -> str:
        # The example's own --timeout bounds this read.
        return self.process.stdout.readline().rstrip("\n")

    def finish(self) -> subprocess.CompletedProcess:
        out, err = self.process.communicate(timeout=RUN_TIMEOUT)
        return subprocess.CompletedProcess(self.process.args,
                                           self.process.returncode, out, err)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def test_monitor_prints_events(daemon, client, tmp_path):
    client.mkdir(b"/w")
    monitor = MonitorProcess(daemon, str(tmp_path), "/w", "--count", "4",
                             "--timeout", "30")
    try:
        assert monitor.line() == "watching /w"
        # The watch is in place: the daemon fired it once, then each change.
        assert monitor.line() == "/w"
        client.write(b"/w/a", b"1")
        assert monitor.line() == "/w/a"
        client.write(b"/w/b", b"2")
        assert monitor.line() == "/w/b"
        client.delete(b"/w/a")
        assert monitor.line() == "/w/a"
        result = monitor.finish()  # --count 4 reached: it exits by itself
    finally:
        monitor.kill()
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    client.write(b"/w/c", b"3")  # nobody is left watching


def test_monitor_gives_up_after_timeout(daemon, client, tmp_path):
    client.mkdir(b"/quiet")
    monitor = MonitorProcess(daemon, str(tmp_path), "/quiet", "--timeout",
                             "0.5")
    try:
        assert monitor.line() == "watching /quiet"
        assert monitor.line() == "/quiet"
        result = monitor.finish()
    finally:
        monitor.kill()
    assert result.returncode == 2
    assert result.stderr == ("no event within 0.5 s, giving up after 1 "
                             "event(s)\n")


def test_monitor_refuses_bad_path(daemon, tmp_path):
    result = run_example(daemon, "monitor.py", "bad//path", "--count", "1",
                         cwd=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == \
        "error: watch: invalid path 'bad//path': contains //\n"
