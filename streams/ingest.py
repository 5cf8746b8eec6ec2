"""The topic boundary of the stream worker: raw Kafka messages in, validated records or dead letters out.

Every message is decoded and validated exactly once, here. A message that cannot be decoded, has
the wrong record type for its topic, or whose key disagrees with its user (which would break the
one-user-one-partition ordering the worker relies on) becomes a :class:`DeadLetter` carrying the
original bytes (or, past the broker's limits, a truncated copy: see
:mod:`streamrec.schemas.deadletters`), its origin and the reason, so nothing is silently dropped.

A tombstone (null value) on the catalogue topic is a delete of the item its key names, as the
topic is compacted: Kafka itself drops a tombstoned key's older records.

Every input topic takes msgpack and JSON alike, chosen per message (a ``content-type`` header, else
the first byte; see :func:`streamrec.schemas.codec.wire_format`). The checks are the same for both;
the reason ends with the format the message was read as, so a producer sees at once whether its
JSON was taken for JSON.

>>> from streamrec.schemas import Click, encode
>>> from streamrec.schemas.topics import Topics
>>> boundary = Boundary(Topics())
>>> boundary.decode("events.clicks", b"u1", encode(Click(user="u1", item="i1", ts=1.7e9)), now=1.7e9)
Click(user='u1', item='i1', ts=1700000000.0)
>>> boundary.decode("events.clicks", b"u2", encode(Click(user="u1", item="i1", ts=1.7e9)), now=1.7e9).reason
"key: b'u2' does not match user 'u1' (msgpack)"
>>> boundary.decode("events.clicks", b"u1", b"\\x00junk", now=1.7e9).reason[:10]
'<payload>:'
>>> boundary.decode("events.clicks", b"u1", b'{"type": "click", "v": 1, "user": "u1", "ts": 1}', now=1.7e9).reason
"item: missing (required for 'click') (json)"
>>> boundary.decode("catalog.items", b"i9", None, now=1.7e9)
Item(item='i9', title='', text='', attributes=Attributes({}), ts=1700000000.0, deleted=True)
>>> boundary.decode("catalog.items", None, None, now=1.7e9, partition=0, offset=7).reason
'key: a tombstone must name its item in the key'
"""

from __future__ import annotations

from streamrec.schemas.codec import content_type, decode, wire_format
from streamrec.schemas.deadletters import dead_letter
from streamrec.schemas.events import Click, DeadLetter, Item, ItemEmbedding, ItemTags, Rating  # noqa: F401
from streamrec.schemas.fields import MAX_REASON_LEN, SchemaError
from streamrec.schemas.topics import Topics


class Boundary:
    """Decodes messages by topic; knows which record types each input topic may carry."""

    def __init__(self, topics: Topics):
        self.expected: dict[str, tuple[type, ...]] = {
            topics.clicks: (Click,),
            topics.ratings: (Rating,),
            topics.items: (Item,),
            topics.embeddings: (ItemEmbedding,),
            topics.tags: (ItemTags,),
        }
        self.keyed_by_user = {topics.clicks, topics.ratings}
        self.items = topics.items

    def decode(self, topic: str, key: bytes | None, value: bytes | None, now: float,
               partition: int | None = None, offset: int | None = None, headers=None):  # fmt: skip
        """A record, or a :class:`DeadLetter` saying why the message was refused (and as what)."""
        ctype = content_type(headers) if headers else None
        try:
            if value is None:
                if topic == self.items:
                    return self.tombstone(key, now)
                raise SchemaError("<payload>", "empty message (null value)")
            record = decode(value, self.expected[topic], ctype)
            if topic in self.keyed_by_user and key != record.user.encode():
                raise SchemaError("key", f"{key!r:.300} does not match user {record.user!r}")
            return record
        except SchemaError as exc:
            fmt = f" ({wire_format(value, ctype)})" if value is not None else ""
            reason = str(exc)[: MAX_REASON_LEN - len(fmt)] + fmt
            return dead_letter(topic, key, value, reason, now, partition, offset)

    @staticmethod
    def tombstone(key: bytes | None, now: float) -> Item:
        """The delete a tombstone on the catalogue topic stands for."""
        if not key:
            raise SchemaError("key", "a tombstone must name its item in the key")
        try:
            item = key.decode("utf-8")
        except UnicodeDecodeError:
            raise SchemaError("key", f"{key[:300]!r} is not UTF-8") from None
        return Item(item=item, ts=now, deleted=True)
