"""Streamed snapshots: a small msgpack document plus raw numpy sections, hashed as they are written.

Why not one msgpack blob: at a million users the model state is gigabytes, and packing it into
one ``bytes`` (then into the checkpoint's own msgpack, then hashing that) held two more copies of
it in memory and spent most of the time serialising Python structures. Here every large piece of
state is a numpy array (co-occurrence, histories and seen sets as CSR arrays, user ids as one byte
blob), each written straight from its own memory into the file while a SHA-256 runs over the
bytes, so writing needs no copy of the state; reading fills freshly allocated arrays section by
section and checks the digest before anything is used.

Layout: ``MAGIC``, the header length (8 bytes, little-endian), the header (msgpack: the document
with every array replaced by ``{"__nd__": i}``, and each array's dtype and shape), the arrays'
bytes in order, then the SHA-256 of everything before it. A reader trusts no length it did not
check against the file: the header length and every section are bounded by the file's size, so
there is no decoder limit the writer does not also respect.

>>> import io
>>> buf = io.BytesIO()
>>> n = write(buf, {"a": np.arange(3.0), "nested": [1, {"b": np.zeros((2, 2), np.float32)}]})
>>> doc = read(io.BytesIO(buf.getvalue()), n)
>>> doc["a"].tolist(), doc["nested"][1]["b"].shape
([0.0, 1.0, 2.0], (2, 2))
>>> read(io.BytesIO(buf.getvalue()[:-1] + b"x"), n)
Traceback (most recent call last):
ValueError: snapshot checksum mismatch (truncated or corrupted)
"""

from __future__ import annotations

import hashlib
import struct
from itertools import chain
from typing import Any, BinaryIO, Hashable, Iterable

import msgpack
import numpy as np

MAGIC = b"STREAMREC-SNAPSHOT-2\n"
_SAFE_DTYPES = frozenset({"<f8", "<f4", "<i8", "<i4", "<u4", "|b1", "|u1"})
_PART = 4096  # rows of a Python structure turned into numpy per part of a chunked section
_CHUNK = 1 << 24  # bytes hashed and written per call for large sections


class Chunks:
    """A 1-d section produced in parts (``parts()`` yields arrays of ``dtype``, ``length`` in all),
    so a large section derived from Python structures is never materialised whole.

    >>> c = Chunks(np.int32, 5, lambda: iter([np.arange(2), np.arange(3)]))
    >>> import io; b = io.BytesIO(); n = write(b, {"c": c}); read(io.BytesIO(b.getvalue()), n)["c"].tolist()
    [0, 1, 0, 1, 2]
    """

    def __init__(self, dtype, length: int, parts):
        self.dtype, self.length, self.parts = np.dtype(dtype), int(length), parts


class _Out:
    def __init__(self, f: BinaryIO):
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def write(self, data) -> None:
        mv = memoryview(data).cast("B")
        for start in range(0, len(mv), _CHUNK):
            part = mv[start : start + _CHUNK]
            self.h.update(part)
            self.f.write(part)
        self.n += len(mv)


def _strip(obj: Any, arrays: list) -> Any:
    if isinstance(obj, (np.ndarray, Chunks)):
        arrays.append(obj)
        return {"__nd__": len(arrays) - 1}
    if isinstance(obj, dict):
        return {k: _strip(v, arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strip(v, arrays) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _fill(obj: Any, arrays: list) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1 and "__nd__" in obj:
            return arrays[obj["__nd__"]]
        return {k: _fill(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_fill(v, arrays) for v in obj]
    return obj


def write(f: BinaryIO, doc: Any) -> int:
    """Write ``doc`` (dicts, lists, scalars, strings, numpy arrays) to ``f``; return the bytes written."""
    arrays: list[np.ndarray] = []
    skeleton = _strip(doc, arrays)
    specs = []
    for i, a in enumerate(arrays):
        le = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        if np.dtype(le).str not in _SAFE_DTYPES:
            raise TypeError(f"refusing to write dtype {a.dtype.str}")
        if isinstance(a, Chunks):
            specs.append([np.dtype(le).str, [a.length]])
            continue
        arrays[i] = np.ascontiguousarray(a, dtype=le)  # a view when it already is (no copy)
        specs.append([np.dtype(le).str, list(a.shape)])
    header = msgpack.packb({"doc": skeleton, "arrays": specs}, use_bin_type=True)
    out = _Out(f)
    out.write(MAGIC)
    out.write(struct.pack("<Q", len(header)))
    out.write(header)
    for a, (dtype, _) in zip(arrays, specs):
        if isinstance(a, Chunks):
            total = 0
            for part in a.parts():
                part = np.ascontiguousarray(part, dtype=dtype)
                total += len(part)
                if len(part):
                    out.write(part.view(np.uint8))
            if total != a.length:
                raise ValueError(f"a chunked section gave {total} values, not the {a.length} announced")
        elif a.size:
            out.write(a.reshape(-1).view(np.uint8))
    digest = out.h.digest()
    f.write(digest)
    return out.n + len(digest)


def read(f: BinaryIO, size: int) -> Any:
    """The document :func:`write` wrote (``size``: the file's length); ``ValueError`` if it is not
    a snapshot, is truncated, corrupted, or names an unsafe dtype."""
    h = hashlib.sha256()

    def take(n: int) -> bytes:
        data = f.read(n)
        if len(data) != n:
            raise ValueError("snapshot truncated")
        h.update(data)
        return data

    if size < len(MAGIC) + 8 + 32 or take(len(MAGIC)) != MAGIC:
        raise ValueError("not a snapshot (wrong magic)")
    (n_header,) = struct.unpack("<Q", take(8))
    left = size - len(MAGIC) - 8 - 32
    if n_header > left:
        raise ValueError("snapshot truncated (header longer than the file)")
    try:
        header = msgpack.unpackb(take(n_header), raw=False, strict_map_key=False)
        specs, skeleton = header["arrays"], header["doc"]
    except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"snapshot header unreadable ({exc})") from None
    left -= n_header
    arrays = []
    for dtype, shape in specs:
        if dtype not in _SAFE_DTYPES:
            raise ValueError(f"refusing to load dtype {dtype}")
        a = np.empty([int(s) for s in shape], dtype=dtype)
        nbytes = a.nbytes
        if nbytes > left:
            raise ValueError("snapshot truncated (a section runs past the end)")
        view = memoryview(a.reshape(-1).view(np.uint8)) if a.size else memoryview(b"")
        got = 0
        while got < nbytes:
            n = f.readinto(view[got : got + _CHUNK])
            if not n:
                raise ValueError("snapshot truncated")
            h.update(view[got : got + n])
            got += n
        left -= nbytes
        arrays.append(a)
    if left != 0 or f.read(32) != h.digest():
        raise ValueError("snapshot checksum mismatch (truncated or corrupted)")
    return _fill(skeleton, arrays)


# -- compact encodings of the Python-side state ----------------------------------------------------


def pack_ids(ids: list[Hashable]) -> dict:
    """Ids as one UTF-8 blob and end offsets when they are all strings (else a plain list).

    >>> unpack_ids(pack_ids(["ann", "bob", "čert"])), unpack_ids(pack_ids([1, "x"]))
    (['ann', 'bob', 'čert'], [1, 'x'])
    """
    if ids and all(type(i) is str for i in ids):
        enc = [i.encode() for i in ids]
        ends = np.cumsum(np.fromiter(map(len, enc), np.int64, len(enc)))
        return {"blob": np.frombuffer(b"".join(enc), np.uint8), "ends": ends}
    return {"list": list(ids)}


def unpack_ids(packed: dict) -> list[Hashable]:
    if "list" in packed:
        return list(packed["list"])
    blob, ends = packed["blob"].tobytes(), packed["ends"].tolist()
    out, start = [], 0
    for end in ends:
        out.append(blob[start:end].decode())
        start = end
    return out


def chunked(dtype, groups: list, lens: np.ndarray, values: bool = False) -> Chunks:
    """The concatenation of ``groups`` (iterables; with ``values`` the dicts' values) as a
    :class:`Chunks` of ``lens.sum()`` values, a few thousand groups at a time."""

    def parts():
        for start in range(0, len(groups), _PART):
            part = groups[start : start + _PART]
            items = (g.values() for g in part) if values else part
            yield np.fromiter(chain.from_iterable(items), dtype, int(lens[start : start + _PART].sum()))

    return Chunks(dtype, int(lens.sum()), parts)


def pack_rows(groups: list[Iterable[int]], lens: Iterable[int] | None = None) -> dict:
    """Lists of ints as CSR (``lens``, ``flat``) without building a Python list of all of them.

    >>> p = pack_rows([[3, 1], [], [7]]); p["lens"].tolist(), p["flat"].length
    ([2, 0, 1], 3)
    >>> import io; b = io.BytesIO(); n = write(b, p); unpack_rows(read(io.BytesIO(b.getvalue()), n))
    [[3, 1], [], [7]]
    """
    lens_a = np.fromiter((len(g) for g in groups) if lens is None else lens, np.int64, len(groups))
    return {"lens": lens_a, "flat": chunked(np.int64, groups, lens_a)}


def unpack_rows(packed: dict) -> list[list[int]]:
    flat = packed["flat"].tolist()
    out, start = [], 0
    for n in packed["lens"].tolist():
        out.append(flat[start : start + n])
        start += n
    return out
