"""compile_encoder: a schema-specialised Avro encoder, byte-identical to fastavro.

The returned :class:`Encoder` first runs Python source generated for the schema (see
:mod:`publisher.avrofast.codegen`). That fast path accepts only values whose encoding it is
sure of: exact built-in types, in range, with fastavro's union choice decided at compile
time. Anything else (a subclass, tuple union notation, a naive datetime, an int for a string,
a lone surrogate ...) makes it give up, and fastavro encodes the record itself, so both the
bytes and the accept/refuse decision are always fastavro's. A refused record raises
:class:`EncodeError` naming the field.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_writer

from publisher.avrofast.codegen import Unfit, generate
from publisher.avrofast.explain import FASTAVRO_ERRORS, explain

#: Everything the fast path may raise on a value it does not handle; the record then goes
#: to fastavro, which decides.
_FAST_PATH_MISSES: tuple[type[Exception], ...] = (Unfit, struct.error, *FASTAVRO_ERRORS)


class Encoder:
    """Encodes values of one schema to the Avro binary body fastavro's schemaless_writer writes."""

    __slots__ = ("_fast", "_named", "_schema", "source")

    def __init__(self, schema: Any, named: dict[str, Any]) -> None:
        self._schema = schema
        self._named = named
        generated = generate(schema, named)
        #: The generated Python source, for reading and debugging.
        self.source = generated.source
        self._fast: Callable[[bytearray, Any], None] = generated.load()

    def __call__(self, record: Mapping[str, Any]) -> bytes:
        """The encoded record; raises EncodeError (a ValueError) if it does not fit the schema."""
        out = bytearray()
        try:
            self._fast(out, record)
        except _FAST_PATH_MISSES:
            return self._with_fastavro(record)
        return bytes(out)

    def fast_path(self, record: Any) -> bytes:
        """The fast path alone: raises instead of handing the record to fastavro.

        For tests and benchmarks that must know the fast path was taken.
        """
        out = bytearray()
        self._fast(out, record)
        return bytes(out)

    def _with_fastavro(self, record: Any) -> bytes:
        buf = BytesIO()
        try:
            schemaless_writer(buf, self._schema, record)
        except FASTAVRO_ERRORS as exc:
            raise explain(record, self._schema, self._named, exc) from exc
        return buf.getvalue()


def compile_encoder(schema: dict[str, Any] | list[Any] | str) -> Encoder:
    """Compile ``schema`` (raw or already parsed by fastavro) into an :class:`Encoder`.

    ``compile_encoder(s)(record)`` equals the bytes ``fastavro.schemaless_writer`` writes for
    ``record`` into a BytesIO, and raises :class:`EncodeError` exactly when it would raise.
    Compile once per schema: generating the code costs milliseconds.
    """
    named: dict[str, Any] = {}
    parsed = parse_schema(schema, named)
    return Encoder(parsed, named)
