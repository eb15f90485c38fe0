"""dataconnect-publisher: iQmetrix DataConnect Deltas to exactly-once Avro events on Kafka."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dataconnect-publisher")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+local"

CONNECTOR_NAME = "dataconnect-publisher"
