"""A faster Avro encoder, byte-identical to ``fastavro.schemaless_writer``.

::

    encode = compile_encoder(entity.schema)  # once per schema
    body = encode(envelope)  # bytes; EncodeError (a ValueError) if it does not fit

Modules: :mod:`~publisher.avrofast.encoder` (the public entry point and the fastavro
fallback), :mod:`~publisher.avrofast.codegen` (schema to Python source),
:mod:`~publisher.avrofast.branches` (fastavro's union choice as a table),
:mod:`~publisher.avrofast.wire` (varints, floats), :mod:`~publisher.avrofast.explain` (which
field failed, and why).
"""

from publisher.avrofast.encoder import Encoder, compile_encoder
from publisher.avrofast.explain import EncodeError

__all__ = ["EncodeError", "Encoder", "compile_encoder"]
