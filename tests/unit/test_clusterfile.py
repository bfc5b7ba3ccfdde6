"""Unit tests for cluster files: format, permissions, errors and naming."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ipython_parallel_kernel.core.clusterfile import (
    check_cluster_id,
    cluster_file_path,
    cluster_id_of,
    kernel_connection_file_path,
    list_cluster_files,
    read_cluster_file,
    write_cluster_file,
)
from ipython_parallel_kernel.core.connection import ConnectionInfo


def make_infos(n: int, directory: Path) -> list[ConnectionInfo]:
    """``n`` connection infos, each pointing at its own (imaginary) connection file."""
    return [
        ConnectionInfo(
            ip="127.0.0.1",
            port=40000 + i,
            key=f"key-{i}",
            pid=1000 + i,
            path=str(directory / f"ipk-cluster-t-kernel-{i}.json"),
        )
        for i in range(n)
    ]


def test_round_trip_keeps_order_and_connection_files(ipython_dir):
    """What write_cluster_file writes, read_cluster_file reads back, target 0 first."""
    path = cluster_file_path("t")
    infos = make_infos(3, path.parent)
    assert write_cluster_file(infos, path) == path
    assert read_cluster_file(path) == infos


def test_format_is_connection_info_plus_connection_file(ipython_dir):
    """Each entry is the kernel's connection-file content plus ``connection_file``."""
    path = cluster_file_path("t")
    infos = make_infos(2, path.parent)
    write_cluster_file(infos, path)
    data = json.loads(path.read_text())
    assert data == [{**info.to_dict(), "connection_file": info.path} for info in infos]


def test_written_with_mode_0600(ipython_dir):
    """The file holds keys: only its owner may read it, and no temporary file is left."""
    path = cluster_file_path("t")
    write_cluster_file(make_infos(1, path.parent), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "Expecting value"),
        ('{"ip": "127.0.0.1"}', "does not hold a JSON list"),
        ("[]", "lists no kernels"),
        ('["127.0.0.1:1"]', "entry 0 is not a JSON object"),
        (
            '[{"ip": "127.0.0.1", "port": 1, "key": "k"}, {"ip": "h", "port": 2}]',
            "entry 1 has no 'key'",
        ),
        ('[{"ip": "127.0.0.1", "port": "1", "key": "k"}]', "not a whole number"),
        ('[{"ip": "127.0.0.1", "port": 1, "key": "k", "connection_file": 3}]', "not a path"),
    ],
)
def test_bad_content_says_what_is_wrong(tmp_path, content, message):
    """Unreadable files raise ValueError naming the file and the problem."""
    path = tmp_path / "cluster.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        read_cluster_file(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_value_error(tmp_path):
    """A missing file is reported like any other unreadable one."""
    with pytest.raises(ValueError, match="cannot read cluster file"):
        read_cluster_file(tmp_path / "nope.json")


def test_list_leaves_out_the_kernels_own_files(ipython_dir):
    """Cluster files are listed by name; the kernels' connection files next to them are not."""
    for cluster_id in ("b", "a"):
        path = cluster_file_path(cluster_id)
        write_cluster_file(make_infos(1, path.parent), path)
        kernel_connection_file_path(cluster_id, 0).write_text("{}")
    assert [cluster_id_of(p) for p in list_cluster_files()] == ["a", "b"]
    assert list_cluster_files("other") == []


def test_default_locations(ipython_dir):
    """Cluster and kernel files live in the profile's security directory."""
    security = ipython_dir / "profile_lan" / "security"
    assert cluster_file_path("x", "lan") == security / "ipk-cluster-x.json"
    assert kernel_connection_file_path("x", 3, "lan") == security / "ipk-cluster-x-kernel-3.json"


@pytest.mark.parametrize("bad", ["", "../up", "a/b", "-x", "big-kernel-2", "sp ace"])
def test_cluster_ids_that_cannot_name_files_are_refused(bad):
    """Ids that would escape the directory or look like a kernel's file are refused."""
    with pytest.raises(ValueError, match="is not allowed"):
        check_cluster_id(bad)


def test_ordinary_cluster_ids_are_accepted():
    """Letters, digits, '_', '.', '-' make valid ids."""
    for good in ("default", "t", "run_2.b-3", "kernel-2"):
        assert check_cluster_id(good) == good
