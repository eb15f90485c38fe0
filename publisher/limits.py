"""How large a record each topic takes, from the topics' own ``max.message.bytes``.

A record the broker refuses as too large fails the transaction that carries it, and the
replay carries it again: the stream would stall, aborting forever. So the publisher reads
each topic's limit at start-up and keeps every record within it:

- an event too large for its entity's topic is dead-lettered (``too_large``) instead;
- a dead letter or a checkpoint too large for its topic stops its stream, with the reason:
  neither can be shrunk without losing what it carries;
- the producer's batches are no larger than the smallest topic takes. The broker applies the
  limit to a whole batch, so a topic created with a small ``max.message.bytes`` refuses
  batches of small records that librdkafka's default ``batch.size`` would build.

An operator may also change a topic's limit while the publisher runs. A record the broker
refuses aborts its transaction, so after an abort the publisher reads the limits again (see
:class:`publisher.service.Publisher`) and, when they changed, keeps the replay within them.

Sizes are counted before compression (key, value, header names and values), as Kafka's
Java producer counts ``max.request.size``: a record within its limit uncompressed fits
whatever the compression does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: The producer's largest message, and the limit of the topics it creates for checkpoints and
#: dead letters (a checkpoint holds a window's digests; a dead letter, its row's whole JSON).
LARGE_MESSAGE_BYTES = 8 * 1024 * 1024

#: Bytes a record batch adds around one record: the v2 batch header (61 bytes), the record's
#: own length fields (varints, under 40 bytes with a handful of headers) and an lz4 frame
#: around data that does not compress (about 20 bytes plus 4 per 64 KB block). Rounded well up.
BATCH_FRAMING_BYTES = 1024

#: librdkafka's default ``batch.size``: the most one batch (of one partition) holds.
LIBRDKAFKA_BATCH_SIZE = 1_000_000


@dataclass(frozen=True, slots=True)
class Limits:
    """The most each kind of record may take, and the producer's batch size when a topic
    needs it smaller than librdkafka's default. The defaults are those of the topics the
    publisher creates."""

    #: Per entity topic: the largest event (key, value and headers) it publishes.
    record_bytes: Mapping[str, int] = field(default_factory=dict)
    #: Per entity topic, when lower than ``publisher.max_record_bytes``: why.
    record_notes: Mapping[str, str] = field(default_factory=dict)
    #: The largest dead letter and checkpoint (key, value and headers).
    dead_letter_bytes: int = LARGE_MESSAGE_BYTES - BATCH_FRAMING_BYTES
    checkpoint_bytes: int = LARGE_MESSAGE_BYTES - BATCH_FRAMING_BYTES
    #: ``batch.size`` for the producer; None keeps librdkafka's (or the operator's) own.
    batch_bytes: int | None = None
    #: What start-up logs as warnings: settings that will dead-letter or stop more than
    #: the operator may expect.
    warnings: list[str] = field(default_factory=list)


def plan_limits(
    *,
    entity_topics: list[str],
    dead_letter_topic: str,
    checkpoint_topic: str,
    topic_limits: Mapping[str, int] | None,
    max_record_bytes: int,
    producer_max_bytes: int,
    batch_size_set: bool,
) -> Limits:
    """The limits, from each topic's ``max.message.bytes`` (``topic_limits``; None when the
    cluster would not say, then only the producer's own ``message.max.bytes`` counts) and
    the settings. Pure: start-up reads the topics and logs the warnings."""
    known = dict(topic_limits or {})

    def bound(topic: str) -> tuple[int, str]:
        """The lower of the topic's and the producer's limit, and which one it is."""
        took = known.get(topic)
        if took is not None and took <= producer_max_bytes:
            return took, f"max.message.bytes of topic {topic}"
        return producer_max_bytes, "message.max.bytes of the producer"

    def room(topic: str) -> int:
        return max(0, bound(topic)[0] - BATCH_FRAMING_BYTES)

    warnings: list[str] = []
    record_bytes: dict[str, int] = {}
    notes: dict[str, str] = {}
    for topic in entity_topics:
        fits = room(topic)
        record_bytes[topic] = min(max_record_bytes, fits)
        if fits < max_record_bytes:
            took, what = bound(topic)
            notes[topic] = f"{what} ({took:,}) less {BATCH_FRAMING_BYTES:,} bytes of batch framing"
            warnings.append(
                f"{topic}: rows whose record is over {fits:,} bytes go to the dead-letter topic "
                f"as too_large ({what} is {took:,}), below publisher.max_record_bytes = "
                f"{max_record_bytes:,}"
            )
    # The topics the publisher creates itself take LARGE_MESSAGE_BYTES; one created smaller
    # still works, until a record that does not fit stops its stream: said at start-up.
    recommended = min(LARGE_MESSAGE_BYTES, producer_max_bytes)
    for topic, kind, example in (
        (dead_letter_topic, "dead letter", "a row too large for its own topic, say"),
        (checkpoint_topic, "checkpoint", "about 11 bytes per row of its last windows"),
    ):
        if known.get(topic, recommended) < recommended:
            warnings.append(
                f"{kind.replace(' ', '-')} topic {topic} takes records up to "
                f"{known[topic]:,} bytes (max.message.bytes): a {kind} over "
                f"{room(topic):,} bytes ({example}) stops its stream; give the topic "
                f"max.message.bytes = {recommended}"
            )
    smallest = min(
        (room(t) for t in [*entity_topics, dead_letter_topic, checkpoint_topic] if t in known),
        default=LIBRDKAFKA_BATCH_SIZE,
    )
    batch_bytes = None
    if smallest < LIBRDKAFKA_BATCH_SIZE and not batch_size_set:
        batch_bytes = max(1, smallest)
    return Limits(
        record_bytes,
        notes,
        room(dead_letter_topic),
        room(checkpoint_topic),
        batch_bytes,
        warnings,
    )


def changes(old: Limits, new: Limits) -> list[str]:
    """What ``new`` keeps differently from ``old`` (plans for the same topics), one phrase
    each: the log line of limits read again while the publisher runs."""
    said: list[str] = []
    for topic, after in sorted(new.record_bytes.items()):
        before = old.record_bytes.get(topic, after)
        if before != after:
            said.append(f"events of {topic} up to {after:,} bytes (were up to {before:,})")
    for kind, before, after in (
        ("dead letters", old.dead_letter_bytes, new.dead_letter_bytes),
        ("checkpoints", old.checkpoint_bytes, new.checkpoint_bytes),
    ):
        if before != after:
            said.append(f"{kind} up to {after:,} bytes (were up to {before:,})")
    if old.batch_bytes != new.batch_bytes:
        said.append(
            f"producer batch.size {_batch(new.batch_bytes)} (was {_batch(old.batch_bytes)})"
        )
    return said


def _batch(n: int | None) -> str:
    return "librdkafka's default" if n is None else f"{n:,}"
