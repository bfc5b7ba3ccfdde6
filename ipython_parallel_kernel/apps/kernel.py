"""``ipk-kernel``: a Python interpreter that listens on a network port.

The main thread runs the engine (so a real SIGINT can interrupt user code, even in
``time.sleep``); the Twisted reactor runs in a second thread and does all network
I/O. With ``--gui`` the main thread runs the toolkit's event loop instead, and the
engine's jobs inside it (see ``gui``).

The kernel binds first, then writes its connection file (mode 0600), then prints one
ready line, so scripts can wait for it::

    $ ipk-kernel --port 0 &
    ipk-kernel ready: 127.0.0.1:41023 pid 4242 connection file .../ipk-kernel-127.0.0.1-41023.json

SIGTERM or SIGINT: clients are told, the connection file is removed, the process exits.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import sys
import textwrap
import threading
import types
from pathlib import Path
from typing import Any

from traitlets import Bool, Enum, Float, Int, List, Unicode
from traitlets.config import Application

from .. import __version__
from ..core.connection import (
    ANY_ADDRESS,
    ConnectionInfo,
    KernelReady,
    connection_file_path,
    format_address,
    outward_address,
    profile_dir,
    write_connection_file,
)
from ..core.profiles import install_shipped, is_shipped, shipped_profiles
from ..core.reactors import private_reactor, tls_wrapped
from ..core.toolkits import GUI_CHOICES
from ..core.wire import DEFAULT_MAX_FRAME, DEFAULT_MAX_HEAD, PREAUTH_MAX_HEAD, new_key
from ..kernel import capture
from ..kernel.access import AccessList, parse_network
from ..kernel.engine import Engine, EngineShutdown

CONFIG_FILE = "ipk_kernel_config.py"


class KernelApp(Application):
    """Start a kernel: a Python interpreter that runs code sent over the network."""

    name = "ipk-kernel"
    version = __version__
    description = """Start a kernel: a Python interpreter that runs the code clients send it.

    Clients connect with RemoteKernel(("127.0.0.1", PORT)) or %kernel connect. Messages
    are signed with a random key written to the connection file (mode 0600); only
    localhost may connect unless --allow says otherwise.
    """
    examples = textwrap.dedent(
        """
        ipk-kernel                         # 127.0.0.1:10105, foreground
        ipk-kernel --port 0 &              # any free port, in the background
        ipk-kernel -p 10106 -a 10.0.0.0/8  # also accept clients from 10.x.x.x
        ipk-kernel --gui wx                # wx windows and WXAgg figures stay live
        ipk-kernel --profile lan --ip 0.0.0.0 --tls-cert cert.pem --tls-key key.pem
        """
    )

    port = Int(10105, help="TCP port to listen on; 0 picks a free one (reported).").tag(config=True)
    ip = Unicode("127.0.0.1", help="Address to bind.").tag(config=True)
    allow = List(
        Unicode(), help="Also accept clients from these addresses or networks (CIDR)."
    ).tag(config=True)
    deny = List(Unicode(), help="Refuse clients from these, even if allowed.").tag(config=True)
    gui = Enum(
        GUI_CHOICES,
        "none",
        help="Run this GUI toolkit's event loop on the main thread, and user code in it, so "
        "windows and matplotlib figures stay live between commands (needs a screen).",
    ).tag(config=True)
    profile = Unicode("default", help="IPython profile whose ipk_kernel_config.py to load.").tag(
        config=True
    )
    connection_file = Unicode(
        "", help="Where to write address and key (JSON, 0600); default: the profile's security/."
    ).tag(config=True)
    tls_cert = Unicode("", help="PEM certificate: serve TLS instead of plain TCP.").tag(config=True)
    tls_key = Unicode("", help="PEM private key for --tls-cert.").tag(config=True)
    key = Unicode("", help="Signing key; a random one is made when empty.").tag(config=True)
    max_frame = Int(
        DEFAULT_MAX_FRAME, help="Largest message accepted, in bytes; larger ones are refused."
    ).tag(config=True)
    max_head = Int(
        DEFAULT_MAX_HEAD,
        help="Largest JSON part of a message (header and content, e.g. source code), in "
        f"bytes, once the client is authenticated; before that, {PREAUTH_MAX_HEAD} at most.",
    ).tag(config=True)
    sign_buffers = Bool(
        False,
        help="Sign the bytes of array buffers too, and refuse unsigned ones (integrity "
        "without TLS; slower). Written into the connection file, so clients sign too.",
    ).tag(config=True)
    history_length = Int(10_000, help="Commands kept in the history.").tag(config=True)
    handshake_timeout = Float(
        5.0,
        help="Seconds a new connection has to authenticate (send a valid connect_request) "
        "before it is closed.",
    ).tag(config=True)
    max_unauthenticated = Int(
        0,
        help="Connections waiting to authenticate at once; a new one past this closes the "
        "oldest. 0: a quarter of the file descriptor limit, at most 256.",
    ).tag(config=True)

    log_level = Enum(
        (0, 10, 20, 30, 40, 50, "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL"),
        default_value=logging.INFO,
        help="Set the log level by value or name.",
    ).tag(config=True)

    # traitlets takes a tuple of names for one alias; its annotation says only str.
    aliases: dict[Any, Any] = {
        ("p", "port"): "KernelApp.port",
        "ip": "KernelApp.ip",
        ("a", "allow"): "KernelApp.allow",
        "deny": "KernelApp.deny",
        "gui": "KernelApp.gui",
        "profile": "KernelApp.profile",
        "connection-file": "KernelApp.connection_file",
        "tls-cert": "KernelApp.tls_cert",
        "tls-key": "KernelApp.tls_key",
        "log-level": "Application.log_level",
    }

    def initialize(self, argv: list[str] | None = None) -> None:
        """Parse the command line and profile, then bind: every step in order."""
        self.parse_command_line(argv)
        self.init_profile()
        self.init_logging()
        self.init_checks()
        self.init_mpi()
        self.init_gui()
        self.init_engine()
        self.init_server()
        self.init_connection_file()

    def init_profile(self) -> None:
        """Load ``ipk_kernel_config.py`` from the profile (installing a shipped one)."""
        directory = profile_dir(self.profile)
        if not directory.is_dir() and not is_shipped(self.profile):
            # A mistyped name must not quietly give a kernel without the profile's settings.
            self.exit_with(
                f"--profile {self.profile}: no such profile: {directory} does not exist and "
                f"none of that name is shipped (shipped: {', '.join(shipped_profiles())}); "
                f"create it with its {CONFIG_FILE}, or pick another"
            )
        install_shipped(self.profile)
        if (directory / CONFIG_FILE).exists():
            self.load_config_file(CONFIG_FILE, path=[str(directory)])
            # The command line wins over the profile.
            self.update_config(self.cli_config)

    def init_logging(self) -> None:
        """Log to the real stderr: user code's prints are captured, log lines are not."""
        handler = logging.StreamHandler(sys.__stderr__)
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s"))
        root = logging.getLogger("ipython_parallel_kernel")
        root.handlers[:] = [handler]
        root.setLevel(self.log_level)  # type: ignore[arg-type]  # an Enum trait of levels
        root.propagate = False
        self.log = root

    def init_checks(self) -> None:
        """Refuse settings that cannot work, before anything is bound."""
        for spec in [*self.allow, *self.deny]:
            try:
                parse_network(spec)
            except ValueError as e:
                self.exit_with(str(e))
        if self.gui != "none":
            from ..kernel.gui import TOOLKIT_LOOPS, GuiUnavailable

            self.toolkit = TOOLKIT_LOOPS[self.gui]()
            try:
                self.toolkit.check()
            except GuiUnavailable as e:
                self.exit_with(str(e))
        if bool(self.tls_cert) != bool(self.tls_key):
            self.exit_with("--tls-cert and --tls-key go together: give both or neither")
        for flag, path in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key)):
            if path and not Path(path).is_file():
                self.exit_with(
                    f"{flag} {path} does not exist; make a self-signed pair with: openssl req "
                    "-x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 "
                    "-subj /CN=$(hostname) -keyout kernel-key.pem -out kernel-cert.pem"
                )

    def init_mpi(self) -> None:
        """Join the MPI world when started as an MPI rank (``mpiexec``, ``srun``), before
        any user code: ``MPI.COMM_WORLD`` is then ready, and waits politely."""
        from ..kernel.mpi import join_world, rank_from_environment

        self.rank = rank_from_environment()
        self.mpi_world = None if self.rank is None else join_world()

    def exit_with(self, message: str) -> None:
        """Print a one-line error and exit with status 2."""
        print(f"ipk-kernel: {message}", file=sys.__stderr__)
        self.exit(2)

    def init_gui(self) -> None:
        """Start the GUI toolkit and install its reactor, before anything binds."""
        if self.gui == "none":
            return
        from ..kernel.gui import GuiUnavailable

        try:
            self.toolkit.install()
        except GuiUnavailable as e:
            self.exit_with(str(e))
        self.toolkit.use_for_matplotlib()

    def init_engine(self) -> None:
        """Capture stdout/stderr, close stdin, and build the engine."""
        sys.stdin = io.StringIO("")
        if self.gui == "none":
            # Figures become PNG display data for the client, as Jupyter's inline backend,
            # instead of windows on whatever screen the kernel's machine happens to have.
            os.environ.setdefault("MPLBACKEND", "agg")
        for sig in (signal.SIGTTIN, signal.SIGTTOU):
            # A background kernel must never stop because it touched the terminal.
            signal.signal(sig, signal.SIG_IGN)
        # User code lives in a fresh __main__ module, as in IPython: pickle, multiprocessing
        # and cloudpickle then treat what it defines as interactively defined.
        main_module = types.ModuleType("__main__")
        sys.modules["__main__"] = main_module
        self.engine = Engine(
            namespace=main_module.__dict__,
            streams=capture.install(),
            history_length=self.history_length,
        )
        # From here on a SIGTERM stops the kernel cleanly, even before it serves.
        if self.gui == "none":
            self.engine.install_signal_handlers()
        else:
            from ..kernel.gui import GuiLoop

            self.gui_loop = GuiLoop(self.toolkit, self.engine)
            self.engine.install_signal_handlers(on_shutdown=self.gui_loop.stop_soon)

    def init_server(self) -> None:
        """Bind the port (not yet serving: the reactor starts in ``start``)."""
        from ..kernel.listener import KernelPort
        from ..kernel.server import KernelFactory, KernelService

        reactor: Any
        if self.gui == "none":
            from twisted.internet import reactor
        else:
            reactor = private_reactor()
        self.reactor = reactor
        self.key = self.key or new_key()
        self.service = KernelService(
            self.engine,
            self.key,
            (self.ip, self.port),
            reactor,
            access=AccessList(self.allow, self.deny),
            gui=self.gui,
            max_frame=self.max_frame,
            max_head=self.max_head,
            sign_buffers=self.sign_buffers,
            handshake_timeout=self.handshake_timeout,
            max_unauthenticated=self.max_unauthenticated,
            mpi_world=self.mpi_world,
        )
        factory = KernelFactory(self.service)
        service = self.service
        try:
            if self.tls_cert:
                factory = tls_wrapped(
                    reactor,
                    factory,
                    self._tls_context(),
                    client=False,
                    plain_refusal=service.needs_tls,
                )
            self.listening = KernelPort(
                self.port,
                factory,
                interface=self.ip,
                reactor=reactor,
                out_of_descriptors=service.out_of_descriptors,
                events=service.events,
            )
            self.listening.startListening()
        except Exception as e:
            self.exit_with(f"cannot listen on {format_address((self.ip, self.port))}: {e}")
        self.port = self.listening.getHost().port
        self.service.address = (self.ip, self.port)

    def _tls_context(self) -> Any:
        from twisted.internet import ssl

        try:
            return ssl.DefaultOpenSSLContextFactory(self.tls_key, self.tls_cert)
        except Exception as e:
            self.exit_with(f"cannot load the TLS certificate or key: {e}")

    def init_connection_file(self) -> None:
        """Write address and key, mode 0600, where clients will look for them."""
        info = ConnectionInfo(
            ip=self.ip,
            port=self.port,
            key=self.key,
            tls=bool(self.tls_cert),
            pid=os.getpid(),
            profile=self.profile,
            sign_buffers=self.sign_buffers,
            rank=self.rank,
            location=outward_address(self.ip) if self.ip in ANY_ADDRESS else None,
        )
        if self.tls_cert:
            info.tls_certificate = Path(self.tls_cert).read_text()
        path = self.connection_file or connection_file_path(info.address, self.profile)
        self.connection_path = write_connection_file(info, path)

    def start(self) -> None:
        """Announce readiness, run the reactor thread, and serve until told to stop."""
        address = format_address((self.ip, self.port))
        network = threading.Thread(
            target=self.reactor.run,
            kwargs={"installSignalHandlers": False},
            name="ipk-reactor",
            daemon=True,
        )
        try:
            print(
                KernelReady(address, os.getpid(), str(self.connection_path)).line(),
                file=sys.__stdout__,
                flush=True,
            )
            network.start()
            if self.gui == "none":
                self.engine.serve()
            else:
                self.gui_loop.run()
                self.log.info("shutting down (the %s event loop stopped)", self.gui)
        except EngineShutdown as e:
            self.log.info("shutting down (%s)", e or "requested")
        finally:
            self.shutdown(network)

    def shutdown(self, network: threading.Thread) -> None:
        """Tell clients, remove the connection file, stop the reactor."""
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.remove_connection_file()
        if not network.is_alive():
            return
        done = threading.Event()

        def close_everything() -> None:
            self.service.say_goodbye()
            self.listening.stopListening()
            self.reactor.callLater(0.2, self.reactor.stop)
            done.set()

        self.reactor.callFromThread(close_everything)
        done.wait(5)
        network.join(5)

    def remove_connection_file(self) -> None:
        """Remove the connection file, if it was written."""
        path = getattr(self, "connection_path", None)
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``ipk-kernel``."""
    app = KernelApp.instance()
    try:
        app.initialize(argv)
    except EngineShutdown:
        # Told to stop while starting: nothing serves yet, so only clean up.
        app.remove_connection_file()
        return
    app.start()


if __name__ == "__main__":
    main()
