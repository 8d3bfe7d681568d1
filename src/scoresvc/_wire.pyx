# cython: language_level=3, boundscheck=False, wraparound=False
# cython: initializedcheck=False, cdivision=True, embedsignature=True
"""Wire parsing: ``parse_interaction_rows`` and ``parse_interaction_columns`` read
RecordInteractionsRequest's row and columnar forms straight from their wire bytes.
The row parser builds Python strings and a dict, so the parsers live apart from
``_core``, whose kernels see only arrays.
"""

from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport NAN
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memcpy

import numpy as np

cdef inline int _varint(const unsigned char* buf, Py_ssize_t n, Py_ssize_t* pos,
                        uint64_t* out) noexcept nogil:
    cdef uint64_t result = 0
    cdef int shift = 0
    cdef unsigned char b
    while pos[0] < n and shift < 64:
        b = buf[pos[0]]
        pos[0] += 1
        result |= (<uint64_t>(b & 0x7F)) << shift
        if b < 0x80:
            out[0] = result
            return 0
        shift += 7
    return -1


cdef inline int _skip(const unsigned char* buf, Py_ssize_t n, Py_ssize_t* pos,
                      int wire) noexcept nogil:
    cdef uint64_t v
    if wire == 0:
        return _varint(buf, n, pos, &v)
    if wire == 1:
        pos[0] += 8
    elif wire == 5:
        pos[0] += 4
    elif wire == 2:
        if _varint(buf, n, pos, &v) != 0 or v > <uint64_t>(n - pos[0]):
            return -1
        pos[0] += <Py_ssize_t>v
    else:
        return -1
    return 0 if pos[0] <= n else -1


cdef inline double _double_le(const unsigned char* at) noexcept nogil:
    """A little-endian IEEE double at ``at`` (the wire's byte order, whatever the host's)."""
    cdef uint64_t bits = 0
    cdef double out
    cdef int i
    for i in range(8):
        bits |= (<uint64_t>at[i]) << (8 * i)
    memcpy(&out, &bits, 8)
    return out


def parse_interaction_rows(const unsigned char[::1] data):
    """Parse a ``RecordInteractionsRequest`` carrying rows (field 1) into columns.

    Returns ``(user_ids, actor, target, kind, ts, weight, request_id)``: the distinct
    ids in order of first use, int64 indexes into them, int64 kinds, float64 unix
    seconds (NaN where ``event_time`` is unset), float64 weights (1 where ``weight``
    is unset). Returns None when the message holds
    ``columns``, is malformed, or anything else this fast path does not handle: the
    caller then parses it with protobuf, which reports errors as it always does.
    Building the id dictionary here, in one pass, is what makes the row form fast.
    """
    cdef const unsigned char* buf = &data[0] if data.shape[0] else NULL
    cdef Py_ssize_t n = data.shape[0], pos = 0, end, sub_end
    cdef uint64_t key, v, length
    cdef int field, wire
    cdef Py_ssize_t rows = 0, cap = 1024
    cdef dict index = {}
    cdef list users = []
    cdef object name, found
    cdef str request_id = ""
    cdef int64_t seconds, nanos, kind_v, who
    cdef bint has_time
    cdef double weight_v
    actor = np.empty(cap, np.int64)
    target = np.empty(cap, np.int64)
    kind = np.empty(cap, np.int64)
    ts = np.empty(cap, np.float64)
    weight = np.empty(cap, np.float64)
    cdef int64_t[::1] a_v = actor, t_v = target, k_v = kind
    cdef double[::1] s_v = ts, w_v = weight
    while pos < n:
        if _varint(buf, n, &pos, &key) != 0:
            return None
        field = <int>(key >> 3)
        wire = <int>(key & 7)
        if field == 2:
            return None  # columns: protobuf's parser handles the columnar form
        if field == 3 and wire == 2:
            if _varint(buf, n, &pos, &length) != 0 or length > <uint64_t>(n - pos):
                return None
            try:
                request_id = PyUnicode_DecodeUTF8(<const char*>buf + pos, <Py_ssize_t>length, NULL)
            except UnicodeDecodeError:
                return None
            pos += <Py_ssize_t>length
            continue
        if field != 1 or wire != 2:
            if _skip(buf, n, &pos, wire) != 0:
                return None
            continue
        if _varint(buf, n, &pos, &length) != 0 or length > <uint64_t>(n - pos):
            return None
        end = pos + <Py_ssize_t>length
        if rows == cap:
            cap *= 2
            actor = np.resize(actor, cap)
            target = np.resize(target, cap)
            kind = np.resize(kind, cap)
            ts = np.resize(ts, cap)
            weight = np.resize(weight, cap)
            a_v = actor
            t_v = target
            k_v = kind
            s_v = ts
            w_v = weight
        a_v[rows] = -1
        t_v[rows] = -1
        kind_v = 0
        seconds = 0
        nanos = 0
        has_time = False
        weight_v = 1.0
        while pos < end:
            if _varint(buf, end, &pos, &key) != 0:
                return None
            field = <int>(key >> 3)
            wire = <int>(key & 7)
            if (field == 1 or field == 2) and wire == 2:
                if _varint(buf, end, &pos, &length) != 0 or length > <uint64_t>(end - pos):
                    return None
                if length == 0:
                    return None  # an empty id: protobuf's path names the field
                try:
                    name = PyUnicode_DecodeUTF8(<const char*>buf + pos, <Py_ssize_t>length, NULL)
                except UnicodeDecodeError:
                    return None
                pos += <Py_ssize_t>length
                found = index.get(name)
                if found is None:
                    who = len(users)
                    index[name] = who
                    users.append(name)
                else:
                    who = <int64_t>found
                if field == 1:
                    a_v[rows] = who
                else:
                    t_v[rows] = who
            elif field == 3 and wire == 0:
                if _varint(buf, end, &pos, &v) != 0:
                    return None
                kind_v = <int64_t>(<int32_t>v)  # an enum is an int32 on the wire
            elif field == 4 and wire == 2:
                if _varint(buf, end, &pos, &length) != 0 or length > <uint64_t>(end - pos):
                    return None
                has_time = True
                sub_end = pos + <Py_ssize_t>length
                while pos < sub_end:
                    if _varint(buf, sub_end, &pos, &key) != 0:
                        return None
                    if (key >> 3) == 1 and (key & 7) == 0:
                        if _varint(buf, sub_end, &pos, &v) != 0:
                            return None
                        seconds = <int64_t>v
                    elif (key >> 3) == 2 and (key & 7) == 0:
                        if _varint(buf, sub_end, &pos, &v) != 0:
                            return None
                        nanos = <int64_t>(<int32_t>v)
                    elif _skip(buf, sub_end, &pos, <int>(key & 7)) != 0:
                        return None
            elif field == 6 and wire == 1:
                if end - pos < 8:
                    return None
                weight_v = _double_le(buf + pos)
                pos += 8
            else:
                if _skip(buf, end, &pos, wire) != 0:
                    return None
        if pos != end:
            return None
        if a_v[rows] < 0 or t_v[rows] < 0:
            return None  # an empty id: protobuf's path names the field
        k_v[rows] = kind_v
        s_v[rows] = (<double>seconds + <double>nanos * 1e-9) if has_time else NAN
        w_v[rows] = weight_v
        rows += 1
    return users, actor[:rows], target[:rows], kind[:rows], ts[:rows], weight[:rows], request_id


cdef inline object _bytes_field(const unsigned char* buf, Py_ssize_t n, Py_ssize_t* pos):
    """The payload of a length-delimited field at ``pos`` as bytes, or None if bad."""
    cdef uint64_t length
    if _varint(buf, n, pos, &length) != 0 or length > <uint64_t>(n - pos[0]):
        return None
    out = (<const char*>buf + pos[0])[:<Py_ssize_t>length]
    pos[0] += <Py_ssize_t>length
    return out


def parse_interaction_columns(const unsigned char[::1] data):
    """Parse a ``RecordInteractionsRequest`` carrying ``columns`` (field 2).

    Returns ``(blob, offsets, actor_index, target_index, kind, event_time_seconds,
    weight, request_id)``: the user ids as one uint8 array of their UTF-8 bytes with int64
    offsets (no Python string per id: known ids are looked up as bytes), then the
    packed columns as bytes. Returns None for anything else (rows, a repeated
    ``columns`` field, a malformed message): protobuf's parser takes those.
    """
    cdef const unsigned char* buf = &data[0] if data.shape[0] else NULL
    cdef Py_ssize_t n = data.shape[0], pos = 0, end = -1, start = -1
    cdef uint64_t key, length
    cdef int field, wire
    cdef Py_ssize_t count = 0, total = 0, cap = 1024, i
    cdef str request_id = ""
    cdef list columns = [b"", b"", b"", b"", b""]
    cdef object value
    spans = np.empty(cap, np.int64)
    cdef int64_t[::1] s_v = spans
    while pos < n:
        if _varint(buf, n, &pos, &key) != 0:
            return None
        field = <int>(key >> 3)
        wire = <int>(key & 7)
        if field == 1:
            return None  # rows
        if field == 3 and wire == 2:
            value = _bytes_field(buf, n, &pos)
            if value is None:
                return None
            try:
                request_id = (<bytes>value).decode("utf-8")
            except UnicodeDecodeError:
                return None
        elif field == 2 and wire == 2:
            if start >= 0:
                return None  # the message given twice: protobuf merges them
            if _varint(buf, n, &pos, &length) != 0 or length > <uint64_t>(n - pos):
                return None
            start = pos
            end = pos + <Py_ssize_t>length
            pos = end
        elif _skip(buf, n, &pos, wire) != 0:
            return None
    if start < 0:
        return None
    # First pass over the columns message: where each id lies, and the packed fields.
    pos = start
    while pos < end:
        if _varint(buf, end, &pos, &key) != 0:
            return None
        field = <int>(key >> 3)
        wire = <int>(key & 7)
        if 1 <= field <= 6 and wire == 2:
            if field == 1:
                if _varint(buf, end, &pos, &length) != 0 or length > <uint64_t>(end - pos):
                    return None
                if count + 1 >= cap:
                    cap *= 2
                    spans = np.resize(spans, cap)
                    s_v = spans
                s_v[count] = pos  # spans: each id's position and length, interleaved
                s_v[count + 1] = <int64_t>length
                count += 2
                total += <Py_ssize_t>length
                pos += <Py_ssize_t>length
            else:
                value = _bytes_field(buf, end, &pos)
                if value is None:
                    return None
                columns[field - 2] = value  # the last occurrence wins, as in protobuf
        elif _skip(buf, end, &pos, wire) != 0:
            return None
    if pos != end:
        return None
    blob = np.empty(total, np.uint8)
    offsets = np.empty(count // 2 + 1, np.int64)
    cdef unsigned char[::1] b_v = blob
    cdef int64_t[::1] o_v = offsets
    cdef Py_ssize_t at = 0, k
    with nogil:
        o_v[0] = 0
        for i in range(count // 2):
            for k in range(s_v[2 * i + 1]):
                b_v[at + k] = buf[s_v[2 * i] + k]
            at += s_v[2 * i + 1]
            o_v[i + 1] = at
    return blob, offsets, columns[0], columns[1], columns[2], columns[3], columns[4], request_id
