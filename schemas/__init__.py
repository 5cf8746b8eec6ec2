"""The wire contract: topic names, Redis keys, and the records that travel between them.

Everything a producer or reader needs is importable from here: the record types, the one
:class:`SchemaError` every validation failure raises, and the msgpack/JSON codec.
"""

from .codec import decode, encode, from_mapping, to_mapping
from .events import (
    RECORD_TYPES,
    SCHEMA_VERSION,
    Click,
    DeadLetter,
    EnrichRequest,
    Item,
    ItemEmbedding,
    ItemTags,
    Rating,
    Record,
    RecommendationList,
    SeenItems,
    SimilarItems,
    content_hash,
)
from .fields import MAX_ID_LEN, RATING_MAX, RATING_MIN, TS_MAX, TS_MIN, Attributes, SchemaError

__all__ = [
    "MAX_ID_LEN",
    "RATING_MAX",
    "RATING_MIN",
    "RECORD_TYPES",
    "SCHEMA_VERSION",
    "TS_MAX",
    "TS_MIN",
    "Attributes",
    "Click",
    "DeadLetter",
    "EnrichRequest",
    "Item",
    "ItemEmbedding",
    "ItemTags",
    "Rating",
    "Record",
    "RecommendationList",
    "SchemaError",
    "SeenItems",
    "SimilarItems",
    "content_hash",
    "decode",
    "encode",
    "from_mapping",
    "to_mapping",
]
