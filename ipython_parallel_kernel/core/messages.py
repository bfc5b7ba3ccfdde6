"""The requests a client can make of a kernel: one declaration per verb, used by both ends.

A request is the message ``<verb>_request``; its reply is ``<verb>_reply``, with the
same id. Every reply has ``status`` ``"ok"`` or ``"error"``; an error reply carries
``error = {ename, evalue, traceback}``. As in Twisted's ``amp.Command``, each
declaration names its fields (type, required or not, default), what an ok reply
carries, and the errors a reply can name besides those raised by user code.

Queued requests run as engine jobs, one at a time, in the order they arrived, behind
any user code already running; immediate ones are answered at once on the kernel's
reactor thread, even while a job runs.

=========  =========  ==============================================================
verb       answered   fields (``?`` optional) -> ok reply
=========  =========  ==============================================================
execute    queued     source: str, filename?: str, stream?: bool, pickler?: str -> record
push       queued     names?: list[str], payload {name: value} -> value
pull       queued     names: list[str], pickler?: str -> payload [values]
apply      queued     pickler?: str, payload (func, args, kwargs) -> payload result; stdout,
                      stderr, started, completed (Unix times)
keys       queued     -> value [names]
delete     queued     names: list[str] -> value
reset      queued     -> value
copy       queued     name: str, targets: list[dict], timeout?: float -> value [addresses]
mpi_bcast  queued     name: str, root: int, ranks: list[int] -> value address (each rank
                      of ``ranks`` runs it: MPI ranks only)
ping       immediate  -> nothing
status     immediate  -> value {state, queued, ...}
result     immediate  number?: int -> record
interrupt  immediate  -> value bool
abort      immediate  ids?: list[int] (this connection's requests) -> value int
allow      immediate  network: str -> value {allow, deny}
deny       immediate  network: str -> value {allow, deny}
notify     immediate  address: str | list, flag?: bool -> value [watchers]
shutdown   immediate  -> nothing
=========  =========  ==============================================================

``pickler`` names the pickler (``core.serialize.PICKLERS``) the kernel writes what it
sends back with: the reply's payload, and the data the code publishes (``data_pub``).
A client sends it when it pickles with another than the default (``use_dill()``), so
what comes back can hold what that pickler can ship.

Before any of these a connection sends ``connect_request`` (``CONNECT``), once.

A kernel also sends notices, unasked, with the id of the request they belong to (0:
none); ``NOTICES`` declares them and the client checks each on arrival. A request's
notices are sent before its reply, on the same connection, so they arrive first.

===============  ====================================================================
notice           fields -> what the client does
===============  ====================================================================
stream           name: str, text: str -> output of a running ``execute(stream=True)``
data_pub         keys: list[str], payload {key: value} -> merged into the result's ``data``
shutdown_notice  reason?: str -> the kernel is going away: fail what is outstanding
===============  ====================================================================

``validate(request, content)`` checks a request's content against its declaration and
returns the fields, defaults filled in; a malformed field raises ``TypeError`` naming
it (``push_request: field 'names' must be list[str], got int``). Fields not declared
are ignored, so a newer client's additions do not break an older kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from .serialize import DEFAULT_PICKLER

#: What an ok reply carries: ``value`` in its content, a ``record``, a pickled
#: ``payload``, or nothing but its status.
ReplyKind = Literal["value", "record", "payload", "none"]


@dataclass(frozen=True)
class Field:
    """One field of a request: its name, the types it may have, and its default.

    ``items`` is the element type of a list field. A field with ``required`` False
    may be absent (or None), and then takes ``default``.
    """

    name: str
    types: tuple[type, ...]
    required: bool = True
    default: Any = None
    items: type | None = None

    def describe(self) -> str:
        """The field's type as an error message names it."""
        names = [t.__name__ for t in self.types]
        if self.items is not None and list in self.types:
            names[self.types.index(list)] = f"list[{self.items.__name__}]"
        return " or ".join(names)

    def check(self, value: Any) -> bool:
        """True if ``value`` is of this field's type."""
        if not _is(value, self.types):
            return False
        items = self.items
        if items is None or type(value) is not list:
            return True
        return all(_is(item, (items,)) for item in value)


def _is(value: Any, types: tuple[type, ...]) -> bool:
    kind = type(value)
    if kind in types:  # the common case: JSON decodes to exactly these types
        return True
    # JSON's true is a Python bool, which is also an int: refuse it where a number is meant.
    return kind is not bool and isinstance(value, types)


class _Declaration:
    """What a request and a notice declaration share: named fields, checked at both ends."""

    msg_type: str
    fields: tuple[Field, ...]

    @cached_property
    def names(self) -> frozenset[str]:
        """The names of the declared fields."""
        return frozenset(spec.name for spec in self.fields)

    def validate(self, content: Any) -> dict[str, Any]:
        """The fields of ``content``, defaults filled in; TypeError names a bad field."""
        return _validated(self.msg_type, self.fields, content)

    def build(self, **fields: Any) -> dict[str, Any]:
        """The content of a message with these fields, checked as the receiving end will."""
        return _built(self.msg_type, self.fields, self.names, fields)


@dataclass(frozen=True)
class Request(_Declaration):
    """The declaration of one request verb."""

    verb: str
    #: True: runs as an engine job behind user code; False: answered at once.
    queued: bool
    fields: tuple[Field, ...] = ()
    #: True if the request carries a pickled payload (``push``'s values, ``apply``'s call).
    payload: bool = False
    reply: ReplyKind = "value"
    #: The ``ename`` of errors the kernel itself can reply with (user code may raise any).
    errors: tuple[str, ...] = ()

    @cached_property
    def msg_type(self) -> str:  # type: ignore[override]  # derived, where a Notice names it
        """The message type on the wire: ``<verb>_request``."""
        return f"{self.verb}_request"


@dataclass(frozen=True)
class Notice(_Declaration):
    """The declaration of a message a kernel sends unasked (see ``NOTICES``)."""

    msg_type: str
    fields: tuple[Field, ...] = ()
    #: True if the notice carries a pickled payload (``data_pub``'s dict).
    payload: bool = False


def _validated(msg_type: str, declared: tuple[Field, ...], content: Any) -> dict[str, Any]:
    if not isinstance(content, dict):
        raise TypeError(f"{msg_type}: content must be an object, got {type(content).__name__}")
    fields: dict[str, Any] = {}
    for spec in declared:
        value = content.get(spec.name)
        if value is None:
            if spec.required:
                raise TypeError(f"{msg_type}: field {spec.name!r} is required")
            fields[spec.name] = spec.default
            continue
        # The common case, one type test: JSON decodes to exactly the declared types.
        if type(value) in spec.types and spec.items is None:
            fields[spec.name] = value
            continue
        if not spec.check(value):
            raise TypeError(
                f"{msg_type}: field {spec.name!r} must be {spec.describe()}, "
                f"got {type(value).__name__}"
            )
        fields[spec.name] = value
    return fields


def _built(
    msg_type: str, declared: tuple[Field, ...], names: frozenset[str], fields: dict[str, Any]
) -> dict[str, Any]:
    unknown = [name for name in fields if name not in names]
    if unknown:
        raise TypeError(f"{msg_type}: no field {', '.join(sorted(unknown))}")
    content = {name: value for name, value in fields.items() if value is not None}
    _validated(msg_type, declared, content)
    return content


_NAMES = Field("names", (list,), items=str)
_PICKLER = Field("pickler", (str,), required=False, default=DEFAULT_PICKLER)
_NETWORK = Field("network", (str,))
_ACCESS_ERRORS = ("ValueError",)

#: The handshake, the first message of every connection; answered with the kernel's nonce.
CONNECT = Request("connect", queued=False, fields=(Field("nonce", (str,)),), reply="none")

#: Every request verb, by verb.
REQUESTS: dict[str, Request] = {
    request.verb: request
    for request in (
        Request(
            "execute",
            queued=True,
            fields=(
                Field("source", (str,)),
                Field("filename", (str,), required=False),
                Field("stream", (bool,), required=False, default=False),
                _PICKLER,
            ),
            reply="record",
            errors=("Aborted",),
        ),
        Request(
            "push",
            queued=True,
            fields=(Field("names", (list,), required=False, default=(), items=str),),
            payload=True,
            errors=("Aborted",),
        ),
        Request(
            "pull", queued=True, fields=(_NAMES, _PICKLER), reply="payload", errors=("Aborted",)
        ),
        Request(
            "apply",
            queued=True,
            fields=(_PICKLER,),
            payload=True,
            reply="payload",
            errors=("Aborted",),
        ),
        Request("keys", queued=True, errors=("Aborted",)),
        Request("delete", queued=True, fields=(_NAMES,), errors=("Aborted",)),
        Request("reset", queued=True, errors=("Aborted",)),
        Request(
            "copy",
            queued=True,
            fields=(
                Field("name", (str,)),
                Field("targets", (list,), items=dict),
                Field("timeout", (float, int), required=False),
            ),
            errors=("Aborted", "RuntimeError"),
        ),
        Request(
            "mpi_bcast",
            queued=True,
            fields=(
                Field("name", (str,)),
                Field("root", (int,)),
                Field("ranks", (list,), items=int),
            ),
            errors=("Aborted", "RuntimeError", "NameError", "ValueError"),
        ),
        Request("ping", queued=False, reply="none"),
        Request("status", queued=False),
        Request(
            "result",
            queued=False,
            fields=(Field("number", (int,), required=False),),
            reply="record",
            errors=("LookupError",),
        ),
        Request("interrupt", queued=False),
        Request(
            "abort",
            queued=False,
            fields=(Field("ids", (list,), required=False, items=int),),
        ),
        Request("allow", queued=False, fields=(_NETWORK,), errors=_ACCESS_ERRORS),
        Request("deny", queued=False, fields=(_NETWORK,), errors=_ACCESS_ERRORS),
        Request(
            "notify",
            queued=False,
            fields=(
                Field("address", (str, list)),
                Field("flag", (bool,), required=False, default=True),
            ),
            errors=("ValueError",),
        ),
        Request("shutdown", queued=False, reply="none"),
    )
}

#: Every request, by message type (``<verb>_request``).
BY_TYPE: dict[str, Request] = {request.msg_type: request for request in REQUESTS.values()}

#: Every notice a kernel sends, by message type.
NOTICES: dict[str, Notice] = {
    notice.msg_type: notice
    for notice in (
        Notice("stream", fields=(Field("name", (str,)), Field("text", (str,)))),
        Notice("data_pub", fields=(Field("keys", (list,), items=str),), payload=True),
        Notice(
            "shutdown_notice",
            fields=(Field("reason", (str,), required=False, default="the kernel shut down"),),
        ),
    )
}
#: What ``publish_data`` sends while a request runs: a dict to merge into its ``data``.
DATA_PUB = NOTICES["data_pub"]

#: The ``ename`` of the error reply to a request whose content does not match its declaration.
MALFORMED = "TypeError"
#: The ``ename`` of the error reply to a message type no declaration names.
UNKNOWN = "UnknownRequest"


def validate(msg_type: str, content: Any) -> tuple[Request, dict[str, Any]]:
    """The declaration of ``msg_type`` and the validated fields of ``content``.

    Raises LookupError for a type no declaration names, TypeError for a bad field.
    """
    request = BY_TYPE.get(msg_type)
    if request is None:
        raise LookupError(f"no request named {msg_type!r}")
    return request, request.validate(content)
