"""The ssh launcher without a host: its ssh command line, and reading what its scripts print."""

from __future__ import annotations

import pytest

from ipython_parallel_kernel.apps.cluster import StartCommand
from ipython_parallel_kernel.errors import LaunchError
from ipython_parallel_kernel.launchers.remote import read_left, read_outcomes, read_pids
from ipython_parallel_kernel.launchers.ssh import SSHLauncher


def test_script_output_is_read_past_whatever_a_login_shell_prints():
    """Lines that are not ours (a chatty .bashrc) are skipped in every reply."""
    assert read_pids("Welcome!\nipk-pid 0 41\nipk-pid 2 43\n") == {0: 41, 2: 43}
    assert read_left("motd\nipk-left\n") == []
    assert read_left("ipk-left 7 8\n") == [7, 8]
    assert read_left("motd\n") is None
    outcomes = read_outcomes('hi\nipk-file 0\n{"ip": "a"}\n\nipk-end 0\nipk-exited 1\nboom\n')
    assert [(o.index, o.kind) for o in outcomes] == [(0, "file"), (1, "exited")]
    assert outcomes[0].text.strip() == '{"ip": "a"}'
    assert outcomes[1].text == "boom"


def test_ssh_args_are_split_as_a_shell_would_and_go_after_batch_mode(monkeypatch):
    """A string of ssh arguments is split shell-style, "~" expanded, after BatchMode."""
    monkeypatch.setenv("HOME", "/home/u")
    launcher = SSHLauncher(ssh_args="-F '~/my cfg' -o User=me")
    assert launcher.ssh_command("node1") == [
        *("ssh", "-o", "BatchMode=yes", "-T"),
        *("-F", "/home/u/my cfg", "-o", "User=me"),
        *("node1", "sh", "-s"),
    ]
    assert SSHLauncher(ssh_args=["-p", "2222"]).ssh_command("n")[4:6] == ["-p", "2222"]


def test_ssh_args_on_the_command_line_are_shell_words():
    """ipk-cluster start --ssh-args "..." reaches SSHLauncher.ssh_args split as a shell
    would, as --mpi-args does (one trait type serves both)."""
    app = StartCommand()
    app.parse_command_line(["--launcher", "ssh", "--ssh-args", "-F 'my cfg' -p 2222"])
    assert app.config.SSHLauncher.ssh_args == ["-F", "my cfg", "-p", "2222"]


def test_without_a_hosts_file_start_says_how_to_give_one(tmp_path):
    """No hosts file configured: LaunchError naming --hosts and c.SSHLauncher.hosts."""
    with pytest.raises(LaunchError, match=r"needs a hosts file: --hosts FILE, or c\.SSHLauncher"):
        SSHLauncher().start(1, [], tmp_path)
    with pytest.raises(LaunchError, match="cannot read hosts file"):
        SSHLauncher(hosts=str(tmp_path / "nope")).start(1, [], tmp_path)
