"""Dead letters that always fit on the broker: the original bytes, or a truncated copy of them.

Why truncate: a message may legally be as large as the broker allows (``message.max.bytes``,
1,048,588 bytes by default), and librdkafka's producers refuse records above 1,000,000 bytes by
default. A dead letter wraps the original key and value with a reason and an origin, so a poison
message near the limit would make an undeliverable dead letter, and a worker that dies on it dies
again at every restart. Every dead letter is therefore built here: the key is kept up to
:data:`KEY_MAX` bytes and the value up to :data:`VALUE_MAX` bytes, the rest cut off, with
``truncated`` set and ``size`` the original value's length; ``topic``, ``partition`` and
``offset`` say where the whole message still is. Even the largest dead letter then encodes under
:data:`ENCODED_MAX` bytes, below the producer's default limit.

>>> d = dead_letter("events.clicks", b"u1", b"x" * 999_950, "not valid msgpack", 1.7e9,
...                 partition=3, offset=41)
>>> d.truncated, d.size, len(d.value), d.partition, d.offset
(True, 999950, 900000, 3, 41)
>>> from streamrec.schemas.codec import encode
>>> len(encode(dead_letter("t", b"k" * 2_000_000, b"v" * 2_000_000, "r" * 5000, 1.7e9))) < ENCODED_MAX
True
>>> dead_letter("t", b"u1", b"small", "bad", 1.7e9).truncated
False
"""

from __future__ import annotations

from streamrec.schemas.events import DeadLetter
from streamrec.schemas.fields import MAX_REASON_LEN

#: bytes of the original value a dead letter carries at most
VALUE_MAX = 900_000
#: bytes of the original key a dead letter carries at most
KEY_MAX = 32_768
#: an upper bound on an encoded dead letter (reason up to 4 bytes a char, fields and headers)
ENCODED_MAX = VALUE_MAX + KEY_MAX + 4 * MAX_REASON_LEN + 1_024
assert ENCODED_MAX < 1_000_000, "dead letters must fit librdkafka's default message.max.bytes"


def dead_letter(topic: str, key: bytes | None, value: bytes | None, reason: str, ts: float,
                partition: int | None = None, offset: int | None = None) -> DeadLetter:  # fmt: skip
    """A :class:`DeadLetter` for the message at ``topic[partition]@offset``, cut to fit."""
    value = b"" if value is None else bytes(value)
    truncated = len(value) > VALUE_MAX or (key is not None and len(key) > KEY_MAX)
    return DeadLetter(
        topic=topic[:249], key=None if key is None else bytes(key[:KEY_MAX]), value=value[:VALUE_MAX],
        reason=str(reason)[:MAX_REASON_LEN], ts=ts, partition=partition, offset=offset,
        size=len(value), truncated=truncated,
    )  # fmt: skip
