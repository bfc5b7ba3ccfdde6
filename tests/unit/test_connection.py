"""Unit tests for connection files, key lookup by address and address parsing."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ipython_parallel_kernel.core import connection
from ipython_parallel_kernel.core.clusterfile import kernel_connection_file_path
from ipython_parallel_kernel.core.connection import (
    ConnectionInfo,
    connection_file_path,
    find_connection,
    format_address,
    parse_address,
    read_connection_file,
    security_dir,
    write_connection_file,
)
from ipython_parallel_kernel.errors import KeyNotFound


def offline_gethostbyname(host: str) -> str:
    """gethostbyname for IP literals only: unit tests never ask a resolver."""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        raise socket.gaierror(f"offline test resolver: {host}") from None


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep find_connection's host lookup off the network."""
    monkeypatch.setattr(connection.socket, "gethostbyname", offline_gethostbyname)


@pytest.fixture
def ipdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private IPYTHONDIR for the test."""
    path = tmp_path / "ipython"
    monkeypatch.setenv("IPYTHONDIR", str(path))
    return path


def info(
    ip: str = "127.0.0.1", port: int = 10105, profile: str = "default", pid: int | None = None
) -> ConnectionInfo:
    """A connection info with a recognisable key, of a running process (this one)."""
    return ConnectionInfo(
        ip=ip,
        port=port,
        key=f"key-{ip}-{port}-{profile}",
        pid=os.getpid() if pid is None else pid,
        profile=profile,
    )


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait(30)
    return process.pid


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


def test_write_creates_0600_file_in_0700_dir(ipdir: Path) -> None:
    """The connection file is mode 0600 inside a security dir of mode 0700."""
    path = write_connection_file(info())
    assert path == ipdir / "profile_default" / "security" / "ipk-kernel-127.0.0.1-10105.json"
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_write_leaves_no_temporary_files(ipdir: Path) -> None:
    """Writing (and rewriting) atomically leaves only the final file behind."""
    first = write_connection_file(info())
    write_connection_file(info())
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]


def test_write_to_explicit_path(tmp_path: Path, ipdir: Path) -> None:
    """An explicit path is honoured, its directory created, and info.path set."""
    target = tmp_path / "elsewhere" / "kernel.json"
    connection = info()
    assert write_connection_file(connection, target) == target
    assert connection.path == str(target)
    assert mode(target) == 0o600
    assert not ipdir.exists()


def test_round_trip(ipdir: Path) -> None:
    """read_connection_file returns what write_connection_file wrote, path included."""
    original = info(profile="default")
    original.tls = True
    original.tls_certificate = "/tmp/cert.pem"
    path = write_connection_file(original)
    loaded = read_connection_file(path)
    assert loaded == original
    assert loaded.path == str(path)
    assert "path" not in json.loads(path.read_text())


def test_read_ignores_unknown_fields(tmp_path: Path) -> None:
    """Fields written by a newer version are ignored, not fatal."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**info().to_dict(), "future_field": 1}))
    assert read_connection_file(path).key == info().key


@pytest.mark.parametrize("text", ["{not json", '{"ip": "127.0.0.1"}', "", "[]", "null", '"text"'])
def test_read_bad_file_is_value_error(tmp_path: Path, text: str) -> None:
    """A malformed connection file raises ValueError naming the file."""
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="cannot read connection file"):
        read_connection_file(path)


def test_read_missing_file_is_value_error(tmp_path: Path) -> None:
    """A missing connection file raises ValueError naming it."""
    with pytest.raises(ValueError, match=r"missing\.json"):
        read_connection_file(tmp_path / "missing.json")


def test_find_by_exact_address(ipdir: Path) -> None:
    """A kernel's connection file is found by its (ip, port)."""
    write_connection_file(info("127.0.0.1", 10105))
    write_connection_file(info("127.0.0.1", 10106))
    assert find_connection(("127.0.0.1", 10106)).key == info("127.0.0.1", 10106).key


def test_find_matches_any_address_binding(ipdir: Path) -> None:
    """A kernel bound to 0.0.0.0 (or ::) is found under any host on its port."""
    write_connection_file(info("0.0.0.0", 10200))
    write_connection_file(info("::", 10201))
    assert find_connection(("10.1.2.3", 10200)).ip == "0.0.0.0"
    assert find_connection(("127.0.0.1", 10201)).ip == "::"


def test_find_does_not_match_other_port_or_host(ipdir: Path) -> None:
    """A file for another port, or another specific host, is not a match."""
    write_connection_file(info("10.0.0.5", 10105))
    write_connection_file(info("127.0.0.1", 10107))
    with pytest.raises(KeyNotFound):
        find_connection(("127.0.0.1", 10105))


def test_find_in_other_profiles(ipdir: Path) -> None:
    """Without a profile, every profile is searched; the default one wins ties."""
    write_connection_file(info("127.0.0.1", 10300, profile="mpi"))
    assert find_connection(("127.0.0.1", 10300)).profile == "mpi"
    write_connection_file(info("127.0.0.1", 10300, profile="default"))
    assert find_connection(("127.0.0.1", 10300)).profile == "default"


def test_find_with_profile_looks_only_there(ipdir: Path) -> None:
    """With a profile, only that profile's security dir is searched."""
    write_connection_file(info("127.0.0.1", 10400, profile="mpi"))
    assert find_connection(("127.0.0.1", 10400), profile="mpi").profile == "mpi"
    with pytest.raises(KeyNotFound) as error:
        find_connection(("127.0.0.1", 10400), profile="other")
    assert str(ipdir / "profile_other" / "security") in str(error.value)
    assert "profile_mpi" not in str(error.value)


def test_find_ipv6_address(ipdir: Path) -> None:
    """An IPv6 kernel is found, and the error message brackets IPv6 addresses."""
    write_connection_file(info("::1", 10500))
    assert find_connection(("::1", 10500)).ip == "::1"
    with pytest.raises(KeyNotFound, match=r"\[::1\]:10501"):
        find_connection(("::1", 10501))


def test_key_not_found_lists_where_it_looked(ipdir: Path) -> None:
    """KeyNotFound names the address, every directory searched, and what to do instead."""
    security_dir("default")
    security_dir("mpi")
    with pytest.raises(KeyNotFound) as error:
        find_connection(("127.0.0.1", 10999))
    text = str(error.value)
    assert "127.0.0.1:10999" in text
    assert str(ipdir / "profile_default" / "security") in text
    assert str(ipdir / "profile_mpi" / "security") in text
    assert "key=" in text


def test_find_skips_unreadable_files(ipdir: Path) -> None:
    """A broken file matching the port is skipped and a good one still found."""
    directory = security_dir("default")
    (directory / "ipk-kernel-0broken-10600.json").write_text("{broken")
    (directory / "ipk-kernel-0list-10600.json").write_text("[]")
    write_connection_file(info("127.0.0.1", 10600, profile="other"))
    assert find_connection(("127.0.0.1", 10600)).profile == "other"


def test_connection_file_path_in_profile(ipdir: Path) -> None:
    """The default path is <IPYTHONDIR>/profile_<p>/security/ipk-kernel-<ip>-<port>.json."""
    path = connection_file_path(("10.0.0.1", 5000), profile="x")
    assert path == ipdir / "profile_x" / "security" / "ipk-kernel-10.0.0.1-5000.json"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:10105", ("127.0.0.1", 10105)),
        ("[::1]:10105", ("::1", 10105)),
        ("node7.cluster:80", ("node7.cluster", 80)),
        (("127.0.0.1", 10105), ("127.0.0.1", 10105)),
        (["127.0.0.1", "10105"], ("127.0.0.1", 10105)),
        ("h:65535", ("h", 65535)),
    ],
)
def test_parse_address_forms(text: object, expected: tuple[str, int]) -> None:
    """'host:port', '[v6]:port', tuples and lists all parse to (host, int port)."""
    assert parse_address(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("127.0.0.1", "is not an address"),
        (10105, "is not an address"),
        (("127.0.0.1",), "is not an address"),
        (("a", 1, 2), "is not an address"),
        ("host:port", "is not a whole number"),
        ("host:", "is not a whole number"),
        (("h", None), "is not a whole number"),
        ("h:0", "out of range"),
        ("h:65536", "out of range"),
        (("h", -1), "out of range"),
    ],
)
def test_parse_address_errors(bad: object, message: str) -> None:
    """Malformed addresses raise ValueError saying what is wrong."""
    with pytest.raises(ValueError, match=message):
        parse_address(bad)  # type: ignore[arg-type]


def test_parse_address_error_gives_an_example() -> None:
    """The 'not an address' error shows the accepted forms."""
    with pytest.raises(ValueError, match="host:port"):
        parse_address("nonsense")


def test_format_address_round_trips_with_parse() -> None:
    """format_address brackets IPv6 hosts so parse_address reads it back."""
    for address in (("127.0.0.1", 1), ("::1", 10105), ("fe80::1", 443)):
        assert parse_address(format_address(address)) == address
    assert format_address(("::1", 5)) == "[::1]:5"


def test_find_skips_a_dead_kernels_file_for_a_live_one(ipdir: Path) -> None:
    """A file left by a killed kernel (its pid not running here) does not shadow the live
    kernel now on that port, even from a profile searched first."""
    write_connection_file(info("127.0.0.1", 10700, profile="default", pid=dead_pid()))
    write_connection_file(info("127.0.0.1", 10700, profile="other"))
    assert find_connection(("127.0.0.1", 10700)).profile == "other"


def test_find_with_only_dead_kernels_files_names_them(ipdir: Path) -> None:
    """When every file for the address is a dead kernel's, the error names them as such."""
    pid = dead_pid()
    stale = write_connection_file(info("127.0.0.1", 10701, pid=pid))
    with pytest.raises(KeyNotFound) as error:
        find_connection(("127.0.0.1", 10701))
    text = str(error.value)
    assert f"{stale} (pid {pid})" in text and "no longer running" in text
    assert "Remove them" in text


def test_find_takes_another_machines_file(ipdir: Path) -> None:
    """A file written on another machine cannot be checked by pid, and is used."""
    elsewhere = info("0.0.0.0", 10702, pid=dead_pid())
    elsewhere.hostname = "some-other-machine"
    write_connection_file(elsewhere)
    assert find_connection(("10.0.0.9", 10702)).hostname == "some-other-machine"


def test_find_a_cluster_kernel_by_address(ipdir: Path) -> None:
    """The connection file of an ipk-cluster kernel is found by its address too."""
    write_connection_file(info("127.0.0.1", 10703), kernel_connection_file_path("c", 3))
    found = find_connection(("127.0.0.1", 10703))
    assert Path(found.path).name == "ipk-cluster-c-kernel-3.json"


def test_ready_lines_read_back_what_the_apps_print():
    """A kernel's and a cluster's ready lines parse to what they were made of."""
    from ipython_parallel_kernel.core.connection import (
        KernelReady,
        cluster_ready_line,
        parse_cluster_ready_line,
    )

    ready = KernelReady("127.0.0.1:41023", 42, "/tmp/with space/k.json")
    assert KernelReady.parse(ready.line()) == ready
    assert parse_cluster_ready_line(cluster_ready_line(1, "/c.json")) == "/c.json"
    assert cluster_ready_line(2, "/c.json").startswith("ipk-cluster ready: 2 kernels,")
    with pytest.raises(ValueError, match="not a ready line"):
        KernelReady.parse("ipk-kernel failed: port in use")
