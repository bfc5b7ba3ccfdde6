"""Hosts files of the ssh launcher: what a line may say, and how kernels are dealt out."""

from __future__ import annotations

import pytest

from ipython_parallel_kernel.launchers.hostfile import Host, parse_hosts, place, read_hosts_file

HOSTS = """
# the machines
node1:2
alice@node2        # one slot
bob@[fe80::1]:3

"""


def test_lines_give_targets_and_slots():
    """host:N, user@host, user@[v6]:N; comments and blank lines ignored."""
    assert parse_hosts(HOSTS) == [
        Host("node1", 2),
        Host("alice@node2", 1),
        Host("bob@fe80::1", 3),
    ]
    assert Host("alice@node2").hostname == "node2"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("node1:two", "line 1: 'node1:two' is not host, host:N"),
        ("ok\nnode1:0", "line 2: 'node1:0' asks for no kernels"),
        ("node 1", "'node 1' is not host"),
        ("::1", "'::1' is not host"),
        ("# nothing\n\n", "names no hosts"),
    ],
)
def test_a_wrong_line_is_named(text, error):
    """Each mistake is a ValueError naming the line."""
    with pytest.raises(ValueError, match=error):
        parse_hosts(text)


def test_a_missing_file_says_so(tmp_path):
    """read_hosts_file names the file it cannot read."""
    with pytest.raises(ValueError, match=r"cannot read hosts file .*nope"):
        read_hosts_file(tmp_path / "nope")


def test_kernels_go_one_per_host_per_round():
    """node1:2 + node2: -n 3 gives node1, node2, node1; a fourth wraps to node1 again."""
    hosts = [Host("node1", 2), Host("node2")]
    assert [h.target for h in place(hosts, 0, 4)] == ["node1", "node2", "node1", "node1"]


def test_added_kernels_continue_where_the_first_stopped():
    """Kernels 2 and 3 of a growing cluster take the slots after kernels 0 and 1."""
    hosts = [Host("a", 2), Host("b", 2)]
    assert [h.target for h in place(hosts, 2, 2)] == ["a", "b"]
    assert [h.target for h in place(hosts, 0, 4)] == ["a", "b", "a", "b"]
