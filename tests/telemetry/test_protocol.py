"""The row protocol is declared once (rows.py): the C side takes it from the generated header, the
extensions are built from the current sources, and the names the C code reads exist in Python.

These tests are about the build, not a path: they run once (not once per mode of the conftest)."""

from __future__ import annotations

import dataclasses
import types

import pytest

from scorewatch.telemetry import native, rows
from scorewatch.telemetry.context import Operation
from scorewatch.telemetry.exporter import InMemoryExporter
from scorewatch.telemetry.processor import BatchProcessor
from scorewatch.telemetry.recorder import State
from scorewatch.telemetry.rows import Newline, Request, Text
from scorewatch.telemetry.templates import Templates
from tests.telemetry.conftest import require_extensions

HEADER = native.HERE / "_protocol.h"


@pytest.fixture(autouse=True)
def native_mode() -> None:
    """These tests ask for the extensions themselves where they need them (require_extensions)."""


@pytest.fixture(autouse=True, name="native")
def once() -> None:  # overrides the conftest's two modes
    return None


def test_the_c_header_is_the_one_rows_py_generates():
    assert HEADER.read_text() == rows.c_header(), (
        "rows.py and _protocol.h disagree: regenerate the header with "
        "`python -m scorewatch.telemetry.rows > src/scorewatch/telemetry/_protocol.h`, then rebuild the extensions")


def test_each_layout_names_every_position_once_and_makes_its_rows_by_name():
    assert [len(rows.fields(layout)) for layout in rows.LAYOUTS] == [Request.SIZE, Text.SIZE, Newline.SIZE]
    assert all(layout.KIND == rows.KIND for layout in rows.LAYOUTS)  # type: ignore[attr-defined]
    names = rows.fields(Request)[1:]
    row = rows.make_request(**{name: name for name in names})
    assert row[Request.KIND] == Request.TAG and len(row) == Request.SIZE
    assert all(row[getattr(Request, name.upper())] == name for name in names)
    names = rows.fields(Text)[1:]
    row = rows.make_text(Text.LINE, **{name: name for name in names})
    assert all(row[getattr(Text, name.upper())] == name for name in names)
    assert rows.as_chunk(row)[1:] == row[1:] and rows.as_chunk(row)[Text.KIND] == Text.CHUNK
    assert rows.make_newline(rows.STDOUT, 7)[Newline.THREAD] == 7
    assert all(len(tag) == 1 and tag.isascii() for tag in rows.TAGS) and len(set(rows.TAGS)) == len(rows.TAGS)

    class Broken:
        SIZE = 3
        KIND, FIRST, SECOND = 0, 1, 1

    with pytest.raises(TypeError, match="each once"):
        rows.fields(Broken)


def test_the_names_the_c_code_reads_are_those_of_the_python_objects():
    state = State()
    for constant, name in vars(rows.StateAttributes).items():
        if constant.isupper():
            assert hasattr(state, name), f"recorder.State has no {name!r}, which _worker.c reads"
    processor = BatchProcessor(InMemoryExporter(), lambda record: [])
    try:
        assert isinstance(getattr(processor, rows.ProcessorAttributes.ROW_LIMIT), int)
    finally:
        processor.shutdown(1)
    operation_fields = {f.name for f in dataclasses.fields(Operation)}
    for attribute in ("OPERATION_ID", "PARENT_ID", "NAME", "REQUEST_ID", "CLIENT_REQUEST_ID", "EXTRA"):
        assert getattr(rows.OperationAttributes, attribute) in operation_fields


def test_the_extensions_are_built_from_the_current_sources_against_this_protocol():
    # Where a C compiler is at hand (CI), the extensions must be there, current, and in use.
    require_extensions()
    for name in native.SOURCES:
        module = native.module(name)
        assert rows.fingerprint() == module.PROTOCOL
        assert native.source_hash(name) == module.SOURCE_HASH, f"{name} is older than its source: pip install -e ."
        assert native.describe(name, True) == f"{name}: C"
        assert native.module(name, enabled=False) is None
        assert "SCOREWATCH_NATIVE=0" in native.describe(name, False)


def test_an_extension_from_another_protocol_or_older_sources_is_refused(monkeypatch):
    current = types.SimpleNamespace(PROTOCOL=rows.fingerprint(), SOURCE_HASH=native.source_hash("_rows"))
    for module, why in [(types.SimpleNamespace(PROTOCOL="0" * 16, SOURCE_HASH=current.SOURCE_HASH), "another row protocol"),
                        (types.SimpleNamespace(PROTOCOL=current.PROTOCOL, SOURCE_HASH="0" * 64), "older than its source"),
                        (current, "built")]:
        monkeypatch.setattr(native.importlib, "import_module", lambda _name, module=module: module)
        loaded, reason = native._load("_rows")
        assert why in reason and (loaded is module) == (why == "built")

    def missing(_name: str) -> None:
        raise ImportError("no such module")

    monkeypatch.setattr(native.importlib, "import_module", missing)
    assert native._load("_rows") == (None, "not built (no C compiler at install)")


def test_the_c_writer_refuses_templates_whose_slots_it_does_not_fill():
    require_extensions()
    templates = Templates("ikey-1", role="svc", role_instance="host", base_properties={}, models="m:1", native=False)
    builder = native.rows_module().Builder
    parts = [templates.request.pieces, templates.request.members, templates.model_data.pieces,
             templates.model_data.members, templates.output.pieces, templates.output.members]
    builder(*parts, {}, 1024)  # the declared slots: taken
    shifted = (*templates.request.members[1:], None)  # an optional slot moved by one
    with pytest.raises(ValueError, match="rows.py and _rows.c disagree"):
        builder(parts[0], shifted, *parts[2:], {}, 1024)
    with pytest.raises(ValueError, match="rows.py and _rows.c disagree"):
        builder(*parts[:4], parts[4][:-1], parts[5][:-1], {}, 1024)  # one slot fewer
