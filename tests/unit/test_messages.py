"""The message schema: every verb declared once, fields checked with errors naming them."""

from __future__ import annotations

import re

import pytest

from ipython_parallel_kernel.core import messages
from ipython_parallel_kernel.core.messages import REQUESTS, validate
from ipython_parallel_kernel.kernel.server import HANDLERS, KernelProtocol


def test_every_verb_is_declared_handled_and_listed_in_the_docstring() -> None:
    """The schema, the kernel's handlers and the module docstring's table name the same 18 verbs."""
    assert len(REQUESTS) == 18
    assert set(HANDLERS) == set(REQUESTS)
    handlers = {name.removeprefix("handle_") for name in vars(KernelProtocol)}
    assert set(REQUESTS) <= handlers
    table = re.findall(r"^(\w+) +(queued|immediate) ", messages.__doc__ or "", re.MULTILINE)
    assert {verb: kind == "queued" for verb, kind in table} == {
        verb: request.queued for verb, request in REQUESTS.items()
    }


def test_a_valid_request_gets_its_defaults_filled_in() -> None:
    """execute_request with only source gets filename None, stream False, the default pickler."""
    request, fields = validate("execute_request", {"source": "1 + 1"})
    assert request is REQUESTS["execute"]
    assert fields == {
        "source": "1 + 1",
        "filename": None,
        "stream": False,
        "pickler": "cloudpickle",
    }
    assert validate("notify_request", {"address": "h:1"})[1] == {"address": "h:1", "flag": True}


@pytest.mark.parametrize(
    ("msg_type", "content", "message"),
    [
        ("copy_request", {"name": 5, "targets": []}, "field 'name' must be str, got int"),
        ("copy_request", {"targets": []}, "field 'name' is required"),
        ("pull_request", {"names": "a"}, "field 'names' must be list[str], got str"),
        ("pull_request", {"names": ["a", 2]}, "field 'names' must be list[str], got list"),
        ("execute_request", {"source": "x", "stream": 1}, "field 'stream' must be bool, got int"),
        ("result_request", {"number": True}, "field 'number' must be int, got bool"),
        ("copy_request", {"name": "a", "targets": [1]}, "'targets' must be list[dict], got list"),
        ("notify_request", {"address": 7}, "field 'address' must be str or list, got int"),
        ("ping_request", [], "content must be an object, got list"),
    ],
)
def test_a_malformed_field_raises_a_type_error_naming_it(
    msg_type: str, content: object, message: str
) -> None:
    """Each malformed content raises TypeError naming the request and the field."""
    with pytest.raises(TypeError, match=re.escape(f"{msg_type}: ")) as caught:
        validate(msg_type, content)
    assert message in str(caught.value)


def test_numbers_fields_take_ints_and_floats_and_undeclared_fields_are_ignored() -> None:
    """copy's timeout takes an int or a float; a field no declaration names is dropped."""
    for timeout in (3, 2.5):
        _, fields = validate("copy_request", {"name": "a", "targets": [], "timeout": timeout})
        assert fields["timeout"] == timeout
    assert validate("keys_request", {"extra": 1})[1] == {}


def test_an_unknown_type_raises_lookup_error() -> None:
    """A message type no declaration names is a LookupError, not a KeyError on the handler table."""
    with pytest.raises(LookupError, match="no request named 'greet_request'"):
        validate("greet_request", {})


def test_build_checks_what_the_kernel_will_and_drops_absent_fields() -> None:
    """build leaves out None fields, and refuses a bad or undeclared field before sending."""
    copy = REQUESTS["copy"]
    assert copy.build(name="a", targets=[], timeout=None) == {"name": "a", "targets": []}
    with pytest.raises(TypeError, match="copy_request: field 'name' is required"):
        copy.build(name=None, targets=[])
    with pytest.raises(TypeError, match="copy_request: no field nmae"):
        copy.build(nmae="a", targets=[])
