"""The topic boundary of the stream worker: raw Kafka messages in, validated records or dead letters out.

Every message is decoded and validated exactly once, here. A message that cannot be decoded, has
the wrong record type for its topic, or whose key disagrees with its user (which would break the
one-user-one-partition ordering the worker relies on) becomes a :class:`DeadLetter` carrying the
original bytes and the reason, so nothing is silently dropped.

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
"""

from __future__ import annotations

from streamrec.schemas.codec import content_type, decode, wire_format
from streamrec.schemas.events import Click, DeadLetter, Item, ItemEmbedding, ItemTags, Rating
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

    def decode(self, topic: str, key: bytes | None, value: bytes | None, now: float, headers=None):
        """A record, or a :class:`DeadLetter` saying why the message was refused (and as what)."""
        ctype = content_type(headers) if headers else None
        try:
            if value is None:
                raise SchemaError("<payload>", "empty message (null value)")
            record = decode(value, self.expected[topic], ctype)
            if topic in self.keyed_by_user and key != record.user.encode():
                raise SchemaError("key", f"{key!r} does not match user {record.user!r}")
            return record
        except SchemaError as exc:
            fmt = f" ({wire_format(value, ctype)})" if value is not None else ""
            reason = str(exc)[: MAX_REASON_LEN - len(fmt)] + fmt
            return DeadLetter(topic=topic, key=key, value=value or b"", reason=reason, ts=now)
