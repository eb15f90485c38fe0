"""Avro bytes for change events: one codec per entity, two wire formats, and dead-letter JSON.

Wire formats of a message value:

- ``single-object`` (default), the Avro spec's single-object encoding:
  ``C3 01`` + the 8-byte little-endian CRC-64-AVRO fingerprint of the schema's Parsing Canonical
  Form + the Avro binary body. Self-describing without a registry: a reader that has the
  ``.avsc`` files finds the schema by fingerprint (:class:`SchemaResolver`).
- ``confluent``: ``00`` + the 4-byte big-endian schema id a registry assigned + the body.

The codec reads and writes the records :class:`publisher.mapping.RowMapper` builds: timestamps
as epoch milliseconds (``int``), GUIDs as ``str``, money as ``Decimal``. :meth:`EntityCodec.decode`
gives back exactly that shape, so ``decode(encode(r)) == r``.
"""

from __future__ import annotations

import copy
import io
import struct
from collections.abc import Iterable
from typing import Any, Final, Literal, cast

import fastavro
import orjson
from fastavro.schema import to_parsing_canonical_form

from publisher import CONNECTOR_NAME
from publisher.avrofast import EncodeError, compile_encoder
from publisher.entities import EntitySpec
from publisher.errors import RowRejected

WireFormat = Literal["single-object", "confluent"]

SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
CONFLUENT_MAGIC: Final = b"\x00"

#: Version tag of the dead-letter JSON document; bump it if a field changes meaning.
DEAD_LETTER_FORMAT: Final = "dataconnect-publisher.dead-letter.v1"

# CRC-64-AVRO, exactly as the Avro specification's "Schema Fingerprints" section writes it:
# the polynomial's reflected form, a table of 256 entries, the empty fingerprint as seed.
_CRC64_EMPTY: Final = 0xC15D213AA4D7A795


def _crc64_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_CRC64_TABLE: Final = _crc64_table()

# What fastavro raises when a datum does not fit the schema (a wrong type, a missing field, a
# long out of range, a decimal with too many places) or when bytes are not a valid body.
_ENCODE_ERRORS: Final = (ValueError, TypeError, OverflowError, AttributeError, KeyError)
_DECODE_ERRORS: Final = (
    EOFError,
    ValueError,
    IndexError,
    TypeError,
    KeyError,
    OverflowError,
    ArithmeticError,
    struct.error,
)


class UndecodableMessage(ValueError):
    """Bytes that are not a message of a known schema in the expected wire format."""


def crc64_avro(data: bytes) -> int:
    """The Avro spec's 64-bit Rabin fingerprint (CRC-64-AVRO) of ``data``, unsigned."""
    fp = _CRC64_EMPTY
    table = _CRC64_TABLE
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def parsing_canonical_form(schema: dict[str, Any] | list[Any] | str) -> str:
    """The schema's Parsing Canonical Form (Avro spec), the text that is fingerprinted."""
    return str(to_parsing_canonical_form(schema))


def _strip_logical(node: Any) -> Any:
    """The schema with uuid and timestamp-millis logical types removed, for decoding.

    Logical types do not change the binary encoding, so decoding with this schema reads the
    same bytes but returns the plain str / int the mapper wrote instead of UUID / datetime.
    """
    if isinstance(node, list):
        return [_strip_logical(n) for n in node]
    if isinstance(node, dict):
        if node.get("logicalType") in ("uuid", "timestamp-millis"):
            return node["type"]
        return {k: _strip_logical(v) for k, v in node.items()}
    return node


class EntityCodec:
    """Encodes and decodes the change events of one entity in one wire format."""

    __slots__ = (
        "_encoder",
        "_header",
        "_plain_schema",
        "_schema",
        "canonical_form",
        "entity_name",
        "fingerprint",
        "schema_id",
        "wire_format",
    )

    def __init__(
        self,
        entity: EntitySpec,
        *,
        wire_format: WireFormat = "single-object",
        schema_id: int | None = None,
    ) -> None:
        """Parse the entity's envelope schema once. ``confluent`` needs the registry's
        ``schema_id`` (0 to 2**31-1); ``single-object`` needs none."""
        self.entity_name = entity.name
        self.wire_format = wire_format
        self.schema_id = schema_id
        # A private copy: the entity's schema dict is shared and must not be touched.
        schema = copy.deepcopy(entity.schema)
        self._schema = cast("dict[str, Any]", fastavro.parse_schema(schema))
        self._encoder = compile_encoder(self._schema)
        self._plain_schema: Any = fastavro.parse_schema(_strip_logical(schema))
        #: Parsing Canonical Form of the envelope schema.
        self.canonical_form = parsing_canonical_form(schema)
        #: CRC-64-AVRO of the canonical form, as an unsigned 64-bit int.
        self.fingerprint = crc64_avro(self.canonical_form.encode("utf-8"))
        if wire_format == "single-object":
            self._header = SINGLE_OBJECT_MAGIC + self.fingerprint.to_bytes(8, "little")
        elif wire_format == "confluent":
            if schema_id is None or not 0 <= schema_id < 2**31:
                raise ValueError("the confluent wire format needs a schema id in [0, 2**31)")
            self._header = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
        else:
            raise ValueError(f"unknown wire format {wire_format!r}")

    @property
    def fingerprint_hex(self) -> str:
        """The fingerprint's 8 bytes as they appear on the wire (little-endian), in hex.

        The same text as ``fastavro.schema.fingerprint(pcf, "CRC-64-AVRO")`` and Avro Java's
        ``SchemaNormalization.parsingFingerprint("CRC-64-AVRO", s)``.
        """
        return self.fingerprint.to_bytes(8, "little").hex()

    @property
    def header(self) -> bytes:
        """The bytes every value of this codec starts with."""
        return self._header

    def encode(self, record: dict[str, Any]) -> bytes:
        """The message value: header + Avro body. A record Avro refuses raises
        ``RowRejected("bad_value", "<field path>: ...")`` so the row dead-letters.

        The body comes from a per-schema compiled encoder (publisher.avrofast), byte-identical
        to fastavro's schemaless_writer and several times faster; whatever it does not
        specialise it hands to fastavro itself.
        """
        if not isinstance(record, dict):
            raise RowRejected("bad_value", "record: not a record")
        try:
            return self._header + self._encoder(record)
        except EncodeError as exc:
            # The message names the field path and types, never the value (customer data).
            raise RowRejected("bad_value", str(exc)) from None

    def decode(self, data: bytes) -> dict[str, Any]:
        """The record in ``data``, which must carry this codec's header."""
        if data[: len(self._header)] != self._header:
            raise UndecodableMessage(
                f"not a {self.entity_name} message in the {self.wire_format} wire format"
            )
        return self.decode_body(memoryview(data)[len(self._header) :])

    def decode_body(self, body: bytes | memoryview) -> dict[str, Any]:
        """The record in a bare Avro body (no header)."""
        stream = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(stream, self._plain_schema, None)
        except _DECODE_ERRORS as exc:
            raise UndecodableMessage(
                f"not a valid {self.entity_name} body ({type(exc).__name__})"
            ) from None
        if stream.tell() != len(body):
            raise UndecodableMessage(f"{len(body) - stream.tell()} bytes after the record")
        if not isinstance(record, dict):  # the envelope is a record: cannot happen
            raise UndecodableMessage("the body is not a record")
        return record


class SchemaResolver:
    """Decodes messages of any known entity, finding the schema from the message's header:
    the fingerprint (single-object) or the schema id (confluent). For the ``tail`` command."""

    def __init__(self, codecs: Iterable[EntityCodec]) -> None:
        """``codecs``: one per entity; confluent ids are taken from codecs that have one."""
        self._by_fingerprint: dict[bytes, EntityCodec] = {}
        self._by_schema_id: dict[int, EntityCodec] = {}
        for codec in codecs:
            fp = codec.fingerprint.to_bytes(8, "little")
            known = self._by_fingerprint.get(fp)
            if known is not None and known.entity_name != codec.entity_name:
                raise ValueError(f"{codec.entity_name} and {known.entity_name} share a schema")
            self._by_fingerprint[fp] = codec
            if codec.schema_id is not None:
                self._by_schema_id[codec.schema_id] = codec

    @classmethod
    def for_entities(cls, entities: Iterable[EntitySpec]) -> SchemaResolver:
        """A resolver for single-object messages of these entities."""
        return cls(EntityCodec(e) for e in entities)

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """(entity name, record) of a message in either wire format."""
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            codec = self._by_fingerprint.get(bytes(data[2:10]))
            if codec is None:
                fp = int.from_bytes(data[2:10], "little")
                raise UndecodableMessage(f"no known schema has fingerprint {fp:#018x}")
            return codec.entity_name, codec.decode_body(memoryview(data)[10:])
        if data[:1] == CONFLUENT_MAGIC and len(data) >= 5:
            schema_id = int.from_bytes(data[1:5], "big")
            codec = self._by_schema_id.get(schema_id)
            if codec is None:
                raise UndecodableMessage(f"no known schema has registry id {schema_id}")
            return codec.entity_name, codec.decode_body(memoryview(data)[5:])
        raise UndecodableMessage("neither an Avro single-object nor a Confluent framed message")


def dead_letter_value(
    source_name: str,
    entity: str,
    raw_row_json: bytes,
    *,
    reason: str,
    detail: str,
    window_start_ms: int,
    window_stop_ms: int,
) -> bytes:
    """The value of a dead-letter message: a JSON object with sorted keys::

        {"connector": "dataconnect-publisher", "detail": "...", "entity": "Customers",
         "format": "dataconnect-publisher.dead-letter.v1", "reason": "bad_value",
         "row": "<the row's JSON text, verbatim>", "source": "...",
         "window_start": <epoch ms>, "window_stop": <epoch ms>}

    ``row`` is the raw JSON as a string, so even a row that is not an object (or not JSON)
    survives byte for byte when it is UTF-8; other bytes are replaced with U+FFFD.
    """
    document = {
        "format": DEAD_LETTER_FORMAT,
        "connector": CONNECTOR_NAME,
        "source": source_name,
        "entity": entity,
        "reason": reason,
        "detail": detail,
        "window_start": window_start_ms,
        "window_stop": window_stop_ms,
        "row": raw_row_json.decode("utf-8", "replace"),
    }
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
