# cython: language_level=3, boundscheck=False, wraparound=False
# cython: initializedcheck=False, cdivision=True, embedsignature=True
"""Typed kernels of the scoring model (see docs/model.md).

The kernels know nothing of users, topics or gRPC: they take the arrays the engine
owns (caller-allocated outputs marked ``# OUT``, arrays updated in place ``# INOUT``),
run without the GIL and trust their inputs. Validation lives in ``scoresvc.core.engine``.

Layout of the state these kernels work on:

* pairs: ``pair_key[p] = src << 32 | dst`` (uint64), ``pair_fd[p, k]`` the
  forward-decayed sums ``sum w * 2^((ts - L) / H)`` for k = LIKE, MENTION, REPLY,
  RESHARE, ``pair_rev[p]`` the slot of ``dst -> src`` or -1.
* endorsements, sparse (a few percent of pairs carry one): bit ``p`` of
  ``eslot_bits`` says whether pair ``p`` has an endorsement slot, and ``eslot_index``
  (over ``eslot_pair``, the pair of each slot) which; ``e_sum[slot]`` is the
  forward-decayed sum of the pair's live endorsements. ``eslot_index`` None: every
  pair ``p`` is slot ``p``.
* ``pair_p[p]``: the transition probability ``P(src -> dst)`` of the last refresh.
* a slack CSR of pair slots per direction: row ``a`` owns
  ``e_pair[start[a] : start[a] + cap[a]]`` of which the first ``length[a]`` are used.
  Rows that outgrow their capacity move to the end of the array, so adding edges never
  rebuilds the graph. Everything else about an edge is read through its pair slot, so
  the adjacency costs 4 bytes an edge per direction.
"""

from cython.parallel cimport prange, threadid
from libc.math cimport exp2, fabs, log1p
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp
from posix.mman cimport MADV_HUGEPAGE, madvise
from posix.stdlib cimport posix_memalign

cdef extern from *:
    # A hint only (never faults): the address may even lie outside the arrays.
    void __builtin_prefetch(const void* address, int rw, int locality) noexcept nogil

import numpy as np

cdef enum:
    # Interaction channels of pair_fd (proto kind - 1); the reciprocity array has
    # one more entry, ENDORSE, for endorsements.
    N_KINDS = 4
    ENDORSE = 4
    # Account status as stored in the status arrays (engine.AccountStatus).
    STATUS_SUSPENDED = 2
    # Endorsement record state of a live endorsement (engine.RecordState).
    REC_LIVE = 1
    INT32_MAX = 2147483647
    # How many pairs (or edges) ahead a loop that reads pairs at random asks for the
    # next one's memory: far enough to hide a cache miss behind the work between.
    AHEAD = 16
    # The same for the Jacobi sweeps, whose loop body is one multiply-add: the
    # gathered credibility must be asked for further ahead to arrive in time.
    GATHER_AHEAD = 64


cdef inline uint64_t _mix(uint64_t k) noexcept nogil:
    # splitmix64 finaliser: packed ids are far from uniform (dense, small), and
    # linear probing needs every bit of the key to reach the low bits of the hash.
    k ^= k >> 33
    k *= <uint64_t>0xff51afd7ed558ccd
    k ^= k >> 33
    k *= <uint64_t>0xc4ceb9fe1a85ec53
    k ^= k >> 33
    return k


cdef struct Endorsed:
    # The pairs' endorsement slots as the kernels read them (see the layout above).
    const uint64_t* bits
    const int32_t* buckets
    int64_t mask
    const uint64_t* pair_of
    const double* e_sum
    bint dense


cdef inline int32_t _eslot(const Endorsed* es, int64_t p) noexcept nogil:
    """Pair ``p``'s endorsement slot, or -1. The bit filters the many pairs without
    one; the few with one probe the index."""
    cdef int64_t h
    cdef int32_t b
    if es.dense:
        return <int32_t>p
    if es.bits == NULL or not ((es.bits[p >> 6] >> (p & 63)) & 1):
        return -1
    h = <int64_t>(_mix(<uint64_t>p) & <uint64_t>es.mask)
    while True:
        b = es.buckets[h]
        if b == -1 or es.pair_of[b] == <uint64_t>p:
            return b
        h = (h + 1) & es.mask


cdef inline double _endorsed(const Endorsed* es, int64_t p) noexcept nogil:
    cdef int32_t slot = _eslot(es, p)
    return es.e_sum[slot] if slot >= 0 else 0.0


cdef inline int64_t _part(int64_t t, int64_t n, int num_threads) noexcept nogil:
    """Where thread ``t``'s contiguous part of ``[0, n)`` starts (``t = num_threads``:
    ``n``): the kernels that keep a block per thread split their input this way, so
    the blocks fold in a fixed order."""
    cdef int64_t share = (n + num_threads - 1) // num_threads
    return t * share if t * share < n else n


cdef struct PairWeights:
    double raw  # sum_k W_k(a->b): decayed, before reciprocity
    double pen  # share * raw: what reciprocity removes from the interactions
    double e    # E(a->b): decayed endorsements, before reciprocity and budget
    double cut  # share * E(a->b): what it removes from the endorsements


cdef inline double _volume(int32_t p, const double[:, ::1] pair_fd,
                           const Endorsed* es) noexcept nogil:
    """V(p) = sum_k W_k + E, forward-decayed (unscaled)."""
    cdef int32_t k
    cdef double v = _endorsed(es, p)
    for k in range(N_KINDS):
        v += pair_fd[p, k]
    return v


cdef inline double _own_share(double support, double partner) noexcept nogil:
    """The share of a user's received volume not from its partner, in [0, 1]."""
    cdef double own
    if support <= 0.0:
        return 0.0
    own = 1.0 - partner / support
    return 0.0 if own < 0.0 else (1.0 if own > 1.0 else own)


cdef inline double _removed_share(int32_t p, int32_t q, const uint64_t[::1] pair_key,
                                  const double[:, ::1] pair_fd,
                                  const Endorsed* es, const double[::1] support,
                                  const uint8_t[::1] mature, double rho) noexcept nogil:
    """Model step 3 for the ordered pair p (q its reverse, or -1): the share of every
    channel of p that reciprocity removes, the one place it is computed.
    ``support[u]`` is the volume u receives from established senders (``mature[x]``
    1), forward-decayed; the share is a ratio of sums at one time, so it does not
    depend on the evaluation time."""
    cdef double v, v_rev, own_src, own_dst
    cdef int32_t src, dst
    if q < 0 or rho == 0.0:
        return 0.0
    v = _volume(p, pair_fd, es)
    v_rev = _volume(q, pair_fd, es)
    if v <= 0.0 or v_rev <= 0.0:
        return 0.0
    src = <int32_t>(pair_key[p] >> 32)
    dst = <int32_t>(pair_key[p] & <uint64_t>0xffffffff)
    own_src = _own_share(support[src], v_rev if mature[dst] else 0.0)
    own_dst = _own_share(support[dst], v if mature[src] else 0.0)
    if own_dst < own_src:
        own_src = own_dst
    return rho * ((v if v < v_rev else v_rev) / v) * (1.0 - own_src * own_src)


cdef inline PairWeights _pair_weights(int32_t p, int32_t q, const uint64_t[::1] pair_key,
                                      const double[:, ::1] pair_fd,
                                      const Endorsed* es, const double[::1] support,
                                      const uint8_t[::1] mature, double rho,
                                      double scale) noexcept nogil:
    """Model steps 1-3 for the ordered pair p (q its reverse, or -1) at ``scale``."""
    cdef PairWeights out
    cdef int32_t k
    cdef double share = _removed_share(p, q, pair_key, pair_fd, es, support,
                                       mature, rho)
    out.raw = 0.0
    for k in range(N_KINDS):
        out.raw += pair_fd[p, k] * scale
    out.e = _endorsed(es, p) * scale
    out.pen = share * out.raw
    out.cut = share * out.e
    return out


def kept_shares(const int32_t[::1] pairs, const uint64_t[::1] pair_key,
                const double[:, ::1] pair_fd, const int32_t[::1] pair_rev,
                const uint64_t[::1] eslot_bits, U64Index eslot_index,
                const uint64_t[::1] eslot_pair, const double[::1] e_sum,
                const double[::1] support, const uint8_t[::1] mature, double rho,
                double[::1] out):
    """``out[i]``: the share of pair ``pairs[i]`` that reciprocity keeps, ``E'/E``
    (OUT): what each of its topic endorsements carries (step 10)."""
    cdef int64_t i, n = pairs.shape[0]
    cdef Endorsed es = _endorsed_view(eslot_bits, eslot_index, eslot_pair, e_sum,
                                      pair_fd.shape[0])
    with nogil:
        for i in range(n):
            out[i] = 1.0 - _removed_share(pairs[i], pair_rev[pairs[i]], pair_key, pair_fd,
                                          &es, support, mature, rho)


cdef inline int64_t _rank(const int32_t[::1] ranking, const double[::1] x,
                          double value) noexcept nogil:
    """How many ranked users have x strictly below value (ranking sorts by x)."""
    cdef int64_t lo = 0, hi = ranking.shape[0], mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if x[ranking[mid]] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef void* _large_alloc(size_t size) noexcept nogil:
    """``malloc``, but a block of 4 MB or more is aligned to and backed by 2 MB pages
    where the system allows (as numpy does for its arrays): the random probes of a
    large hash table then miss the TLB far less. Free with ``free``."""
    cdef void* block = NULL
    if size < (4 << 20):
        return malloc(size)
    if posix_memalign(&block, 2 << 20, size) != 0:
        return NULL
    # Advice only, which a kernel without huge pages ignores (the advice itself is
    # Linux's, as the build's OpenMP is gcc's).
    madvise(block, size, MADV_HUGEPAGE)
    return block


cdef class U64Index:
    """Open-addressing hash index from uint64 keys to dense int32 slots.

    The keys themselves live in a caller-owned ``stored`` array (slot ``i`` holds the
    key of slot ``i``), so the index costs one int32 per bucket: at the 0.7 load
    limit, 5.7 to 11.4 bytes per key.
    """

    cdef int32_t* buckets
    cdef int64_t mask
    cdef int64_t size

    def __cinit__(self):
        self.mask = 15
        self.size = 0
        self.buckets = <int32_t*>malloc(16 * sizeof(int32_t))
        if self.buckets == NULL:
            raise MemoryError()
        for i in range(16):
            self.buckets[i] = -1

    def __dealloc__(self):
        free(self.buckets)

    def __len__(self):
        return self.size

    @property
    def nbytes(self):
        return (self.mask + 1) * sizeof(int32_t)

    cdef int _rehash(self, const uint64_t* stored, int64_t new_capacity) noexcept nogil:
        cdef int32_t* fresh = <int32_t*>_large_alloc(new_capacity * sizeof(int32_t))
        cdef int64_t i, h, new_mask = new_capacity - 1
        if fresh == NULL:
            return -1
        for i in range(new_capacity):
            fresh[i] = -1
        for i in range(self.size):
            if i + AHEAD < self.size:
                __builtin_prefetch(&fresh[_mix(stored[i + AHEAD]) & <uint64_t>new_mask], 1, 1)
            h = <int64_t>(_mix(stored[i]) & <uint64_t>new_mask)
            while fresh[h] != -1:
                h = (h + 1) & new_mask
            fresh[h] = <int32_t>i
        free(self.buckets)
        self.buckets = fresh
        self.mask = new_mask
        return 0

    def add_ids(self, const uint64_t[::1] stored_hash, int64_t first, int64_t last):
        """Index the slots ``[first, last)`` by the values ``stored_hash[i]`` (a
        ``U64Index``: the keys; a ``BytesIndex``: the ids' hashes), already appended
        to the caller's array and known to be absent. The buckets are sized once for
        all of them. Returns nothing; raises MemoryError if a rehash fails."""
        cdef int64_t i, h, capacity = self.mask + 1
        cdef int failed = 0
        if first != self.size or last > stored_hash.shape[0]:
            raise ValueError("ids must be added in order, after the indexed ones")
        with nogil:
            while last * 10 > capacity * 7:
                capacity *= 2
            if capacity > self.mask + 1:
                failed = self._rehash(&stored_hash[0], capacity)
            if failed == 0:
                for i in range(first, last):
                    if i + AHEAD < last:  # the buckets are hit at random: ask ahead
                        __builtin_prefetch(&self.buckets[_mix(stored_hash[i + AHEAD])
                                                         & <uint64_t>self.mask], 1, 1)
                    h = <int64_t>(_mix(stored_hash[i]) & <uint64_t>self.mask)
                    while self.buckets[h] != -1:
                        h = (h + 1) & self.mask
                    self.buckets[h] = <int32_t>i
                    self.size += 1
        if failed:
            raise MemoryError()

    def get_or_insert(self, const uint64_t[::1] keys, uint64_t[::1] stored,
                      int32_t[::1] out, int64_t start=0):
        """Map ``keys[start:]`` to slots, appending unseen keys to ``stored``.

        Parameters
        ----------
        keys : uint64 array, shape (n,)                               # IN
        stored : uint64 array, shape (capacity,)                      # INOUT
            Keys of existing slots in ``[0, len(self))``; new keys are appended.
        out : int32 array, shape (n,)                                 # OUT
        start : first position of ``keys`` to map.

        Returns
        -------
        next : int
            ``n`` when every key was mapped, else the first position not mapped
            because ``stored`` is full: grow it and call again from there.
        """
        cdef int64_t n = keys.shape[0], cap = stored.shape[0], i, h
        cdef uint64_t k
        cdef int32_t b
        cdef int failed = 0
        if self.size > cap:
            raise ValueError("stored is smaller than the index")
        with nogil:
            i = start
            while i < n:
                k = keys[i]
                h = <int64_t>(_mix(k) & <uint64_t>self.mask)
                while True:
                    b = self.buckets[h]
                    if b == -1:
                        break
                    if stored[b] == k:
                        break
                    h = (h + 1) & self.mask
                if b == -1:
                    if self.size == cap:
                        break
                    stored[self.size] = k
                    self.buckets[h] = <int32_t>self.size
                    b = <int32_t>self.size
                    self.size += 1
                    # Keep the load at most 0.7: probes stay short on dense keys.
                    if self.size * 10 > (self.mask + 1) * 7:
                        if self._rehash(&stored[0], (self.mask + 1) * 2) != 0:
                            failed = 1
                            break
                out[i] = b
                i += 1
        if failed:
            raise MemoryError()
        return i

    def lookup(self, const uint64_t[::1] keys, const uint64_t[::1] stored,
               int32_t[::1] out):
        """``out[i]`` = slot of ``keys[i]``, or -1 when absent.          # OUT"""
        cdef int64_t n = keys.shape[0], i, h
        cdef int32_t b
        with nogil:
            for i in range(n):
                h = <int64_t>(_mix(keys[i]) & <uint64_t>self.mask)
                while True:
                    b = self.buckets[h]
                    if b == -1 or stored[b] == keys[i]:
                        break
                    h = (h + 1) & self.mask
                out[i] = b


cdef Endorsed _endorsed_view(const uint64_t[::1] eslot_bits, U64Index eslot_index,
                             const uint64_t[::1] eslot_pair, const double[::1] e_sum,
                             int64_t n_pairs) except *:
    """The kernels' view of a table's endorsement slots for pairs ``[0, n_pairs)``."""
    cdef Endorsed es
    es.dense = eslot_index is None
    es.e_sum = &e_sum[0] if e_sum.shape[0] else NULL
    es.bits = NULL
    es.buckets = NULL
    es.pair_of = NULL
    es.mask = 0
    if es.dense:
        if e_sum.shape[0] < n_pairs:
            raise ValueError("e_sum must hold a sum per pair when every pair is its slot")
        return es
    if eslot_bits.shape[0] * 64 < n_pairs:
        raise ValueError("eslot_bits must hold a bit per pair")
    if eslot_index.size > eslot_pair.shape[0] or eslot_index.size > e_sum.shape[0]:
        raise ValueError("eslot_pair and e_sum must hold every indexed slot")
    es.bits = &eslot_bits[0] if eslot_bits.shape[0] else NULL
    es.buckets = eslot_index.buckets
    es.mask = eslot_index.mask
    es.pair_of = &eslot_pair[0] if eslot_pair.shape[0] else NULL
    return es


cdef inline uint64_t _hash_bytes(const uint8_t* b, int64_t n) noexcept nogil:
    # FNV-1a over the bytes, then the splitmix finaliser for the low bits.
    cdef uint64_t h = <uint64_t>14695981039346656037ULL
    cdef int64_t i
    for i in range(n):
        h = (h ^ b[i]) * <uint64_t>1099511628211ULL
    return _mix(h ^ <uint64_t>n)


def hash_ids(const uint8_t[::1] blob, const int64_t[::1] offsets, uint64_t[::1] out):
    """``out[i]`` = 64-bit hash of the bytes ``blob[offsets[i]:offsets[i + 1]]``. # OUT"""
    cdef int64_t i, n = offsets.shape[0] - 1
    cdef const uint8_t* base = &blob[0] if blob.shape[0] else NULL
    with nogil:
        for i in range(n):
            out[i] = _hash_bytes(base + offsets[i], offsets[i + 1] - offsets[i])


cdef class BytesIndex(U64Index):
    """Open-addressing index from byte strings to dense int32 ids (the user table).

    The strings live in caller-owned arrays: id ``i`` is
    ``stored_blob[stored_offsets[i]:stored_offsets[i + 1]]`` with hash
    ``stored_hash[i]`` (from ``hash_ids``). Equal hashes are confirmed byte by byte,
    so distinct ids never share a slot whatever the hash does.
    """

    def lookup_ids(self, const uint64_t[::1] hashes, const uint8_t[::1] blob,
                   const int64_t[::1] offsets, const uint64_t[::1] stored_hash,
                   const uint8_t[::1] stored_blob, const int64_t[::1] stored_offsets,
                   int32_t[::1] out):
        """``out[i]`` = id of string ``i`` of (``blob``, ``offsets``), or -1.  # OUT"""
        cdef int64_t n = hashes.shape[0], i, h, length
        cdef int32_t b
        cdef const uint8_t* base = &blob[0] if blob.shape[0] else NULL
        cdef const uint8_t* known = &stored_blob[0] if stored_blob.shape[0] else NULL
        with nogil:
            for i in range(n):
                length = offsets[i + 1] - offsets[i]
                h = <int64_t>(_mix(hashes[i]) & <uint64_t>self.mask)
                while True:
                    b = self.buckets[h]
                    if b == -1:
                        break
                    if (stored_hash[b] == hashes[i]
                            and stored_offsets[b + 1] - stored_offsets[b] == length
                            and memcmp(known + stored_offsets[b], base + offsets[i],
                                       <size_t>length) == 0):
                        break
                    h = (h + 1) & self.mask
                out[i] = b


def pack_pair_keys(const int64_t[::1] dense, const int64_t[::1] actor,
                   const int64_t[::1] target, uint64_t[::1] keys):
    """``keys[i] = dense[actor[i]] << 32 | dense[target[i]]`` (OUT), one pass with no
    temporaries (a batch may hold tens of millions of rows)."""
    cdef int64_t i, n = actor.shape[0]
    with nogil:
        for i in range(n):
            keys[i] = (<uint64_t>dense[actor[i]] << 32) | <uint64_t>dense[target[i]]


def accumulate(const int32_t[::1] pair, const int8_t[::1] channel,
               const double[::1] ts, const double[::1] count,
               const double[::1] channel_weight, double landmark, double half_life,
               double[:, ::1] pair_fd):
    """Add events to the forward-decayed pair sums.

    ``pair_fd[pair[i], channel[i]] += count[i] * channel_weight[channel[i]]
    * 2^((ts[i] - L) / H)`` (pair_fd is INOUT), with ``count`` empty meaning 1 for
    every event. Sequential: pairs repeat, and a scatter with atomics would cost more
    than it saves on two cores.
    """
    cdef int64_t i, n = pair.shape[0]
    cdef double inv_h = 1.0 / half_life
    cdef bint counted = count.shape[0] > 0
    with nogil:
        for i in range(n):
            pair_fd[pair[i], channel[i]] += (
                (count[i] if counted else 1.0)
                * channel_weight[channel[i]] * exp2((ts[i] - landmark) * inv_h))


def keep_earliest(const int64_t[::1] users, const double[::1] times, double[::1] earliest,
                  int num_threads=1, const int64_t[::1] others=None):
    """``earliest[users[i]] = min(earliest[users[i]], times[i])`` (INOUT; ``users``
    must index ``earliest``), and the same for ``others[i]`` where given (the other
    users of the same events: one pass reads the times once): numpy's
    ``minimum.at`` without its per-element dispatch. On several threads (at most 8)
    each takes a contiguous share into a copy of its own, folded in after; when the
    copies would outweigh the events, one thread."""
    cdef int64_t i, t, u, n = users.shape[0], m = earliest.shape[0]
    cdef bint both = others is not None
    if times.shape[0] != n or (both and others.shape[0] != n):
        raise ValueError("users, others and times differ in length")
    num_threads = min(num_threads, 8)
    if num_threads < 2 or n < 1_000_000 or num_threads * m > n:
        with nogil:
            for i in range(n):
                if times[i] < earliest[users[i]]:
                    earliest[users[i]] = times[i]
                if both and times[i] < earliest[others[i]]:
                    earliest[others[i]] = times[i]
        return
    copies_array = np.empty((num_threads, m))
    copies_array[:] = np.asarray(earliest)
    cdef double[:, ::1] copies = copies_array
    with nogil:
        for t in prange(num_threads, schedule="static", chunksize=1,
                        num_threads=num_threads):
            for i in range(_part(t, n, num_threads),
                           _part(t + 1, n, num_threads)):
                if times[i] < copies[t, users[i]]:
                    copies[t, users[i]] = times[i]
                if both and times[i] < copies[t, others[i]]:
                    copies[t, others[i]] = times[i]
        for u in prange(m, schedule="static", num_threads=num_threads):
            for t in range(num_threads):
                if copies[t, u] < earliest[u]:
                    earliest[u] = copies[t, u]


# ---------------------------------------------------------------- cold build
#
# A bulk load into an empty pair table builds it in parallel passes instead of a hash
# insert per event: the events are grouped by the lower user of their pair (a stable
# counting sort), so both directions of a pair land in one group, which one thread
# owns; a scratch array per thread, indexed by the other user, finds each pair's
# slot. Pairs are laid out group by group, both directions side by side, so their
# reverse slots are known without a lookup.

cdef inline int64_t _end(const int64_t[::1] dense, const int64_t[::1] users,
                         const int64_t[::1] extra, int64_t i) noexcept nogil:
    """One user of entry ``i`` of ``group_events``: of event ``i`` (``users`` its actors
    or targets; ``dense`` empty: their own numbers), or past the events of the extra
    pair ``i - len(users)``."""
    cdef int64_t n = users.shape[0]
    if i >= n:
        return extra[i - n]
    return users[i] if dense.shape[0] == 0 else dense[users[i]]


cdef inline int64_t _group(const int64_t[::1] dense, const int64_t[::1] actor,
                           const int64_t[::1] target, const int64_t[::1] extra_a,
                           const int64_t[::1] extra_b, int64_t i) noexcept nogil:
    """The group of entry i in ``group_events``: the lower user of its pair."""
    cdef int64_t a = _end(dense, actor, extra_a, i), b = _end(dense, target, extra_b, i)
    return a if a < b else b


def group_events(const int64_t[::1] dense, const int64_t[::1] actor,
                 const int64_t[::1] target, const int8_t[::1] channel,
                 const double[::1] ts, const double[::1] count,
                 const double[::1] channel_weight, double landmark, double half_life,
                 const int64_t[::1] extra_a, const int64_t[::1] extra_b,
                 int64_t[::1] group_start, uint32_t[::1] partner, int8_t[::1] kind,
                 double[::1] value, int num_threads):
    """Events ``dense[actor[i]] -> dense[target[i]]`` (``dense`` empty: the identity,
    as in a bulk load into an empty engine) grouped by the lower user ``u``
    of their pair, in their order within each group (OUT): group ``u`` is positions
    ``group_start[u] : group_start[u + 1]`` (one more entry than users), and at each
    ``partner`` is ``2 v + d`` (v the other user; d 0 for u -> v, 1 for v -> u),
    ``kind`` the channel and ``value`` what the event adds to the pair's sum of that
    channel, as ``accumulate`` computes it. The pairs ``extra_a[j] -> extra_b[j]``
    (dense users) follow the events as entries adding nothing, so that their pairs
    exist. Each thread counts and places one contiguous share of the entries, so the
    passes stream."""
    cdef int64_t n = actor.shape[0], users = group_start.shape[0] - 1
    cdef int64_t entries = n + extra_a.shape[0]
    cdef int64_t t, i, u, total, a, b, at
    cdef int32_t lo
    cdef double inv_h = 1.0 / half_life
    cdef bint counted = count.shape[0] > 0
    if extra_b.shape[0] != extra_a.shape[0] or partner.shape[0] < entries:
        raise ValueError("extra pairs differ in length, or the output is too short")
    counts_array = np.zeros((num_threads, users), np.int64)
    cdef int64_t[:, ::1] counts = counts_array
    with nogil:
        for t in prange(num_threads, schedule="static", chunksize=1,
                        num_threads=num_threads):
            for i in range(_part(t, entries, num_threads),
                           _part(t + 1, entries, num_threads)):
                if i + AHEAD < entries:
                    __builtin_prefetch(&counts[t, _group(dense, actor, target, extra_a,
                                                         extra_b, i + AHEAD)], 1, 1)
                a = _end(dense, actor, extra_a, i)
                b = _end(dense, target, extra_b, i)
                counts[t, a if a < b else b] += 1
        # Each thread's first position in each group, in (group, thread) order.
        total = 0
        for u in range(users):
            group_start[u] = total
            for t in range(num_threads):
                i = counts[t, u]
                counts[t, u] = total
                total += i
        group_start[users] = total
        for t in prange(num_threads, schedule="static", chunksize=1,
                        num_threads=num_threads):
            for i in range(_part(t, entries, num_threads),
                           _part(t + 1, entries, num_threads)):
                # The group's next position for the entry 2 AHEAD on, and where the
                # entry AHEAD on will be written (unless its group fills up first).
                if i + 2 * AHEAD < entries:
                    __builtin_prefetch(&counts[t, _group(dense, actor, target, extra_a,
                                                         extra_b, i + 2 * AHEAD)], 1, 1)
                if i + AHEAD < entries:
                    at = counts[t, _group(dense, actor, target, extra_a, extra_b, i + AHEAD)]
                    __builtin_prefetch(&partner[at], 1, 1)
                    __builtin_prefetch(&value[at], 1, 1)
                    __builtin_prefetch(&kind[at], 1, 1)
                a = _end(dense, actor, extra_a, i)
                b = _end(dense, target, extra_b, i)
                if a <= b:
                    lo = <int32_t>a
                    at = counts[t, lo]
                    partner[at] = <uint32_t>(2 * b)
                else:
                    lo = <int32_t>b
                    at = counts[t, lo]
                    partner[at] = <uint32_t>(2 * a + 1)
                counts[t, lo] = at + 1
                if i < n:
                    kind[at] = channel[i]
                    value[at] = ((count[i] if counted else 1.0) * channel_weight[channel[i]]
                                 * exp2((ts[i] - landmark) * inv_h))
                else:
                    kind[at] = 0
                    value[at] = 0.0


cdef inline void _note_partners(const uint32_t[::1] partner, int64_t e0, int64_t e1,
                                int32_t stamp, int32_t* seen, uint8_t* dirs) noexcept nogil:
    """``dirs[v]``: bit d set for each direction d of the group's pairs with v. Asks
    for the scratch of the partner AHEAD entries on (the next groups' too)."""
    cdef int64_t e, last = partner.shape[0]
    cdef uint32_t v
    for e in range(e0, e1):
        if e + AHEAD < last:
            v = partner[e + AHEAD] >> 1
            __builtin_prefetch(&seen[v], 1, 1)
            __builtin_prefetch(&dirs[v], 1, 1)
        v = partner[e] >> 1
        if seen[v] != stamp:
            seen[v] = stamp
            dirs[v] = 0
        dirs[v] |= <uint8_t>(1 << (partner[e] & 1))


def count_group_pairs(const int64_t[::1] group_start, const uint32_t[::1] partner,
                      int64_t[::1] pairs_of, int num_threads):
    """``pairs_of[u]`` (OUT): how many ordered pairs group ``u`` of ``group_events``
    forms."""
    cdef int64_t users = group_start.shape[0] - 1, u, c, e
    cdef int32_t t
    cdef uint32_t v
    seen_array = np.full((num_threads, users), -1, np.int32)
    dirs_array = np.zeros((num_threads, users), np.uint8)
    cdef int32_t[:, ::1] seen = seen_array
    cdef uint8_t[:, ::1] dirs = dirs_array
    with nogil:
        for u in prange(users, schedule="dynamic", chunksize=256, num_threads=num_threads):
            t = threadid()
            _note_partners(partner, group_start[u], group_start[u + 1], <int32_t>u,
                           &seen[t, 0], &dirs[t, 0])
            c = 0
            # Count each partner once: clear its bits once counted.
            for e in range(group_start[u], group_start[u + 1]):
                v = partner[e] >> 1
                c = c + (dirs[t, v] & 1) + (dirs[t, v] >> 1)
                dirs[t, v] = 0
            pairs_of[u] = c


def build_pairs(const int64_t[::1] group_start, const uint32_t[::1] partner,
                const int8_t[::1] kind, const double[::1] value,
                const int64_t[::1] pair_start, uint64_t[::1] pair_key,
                double[:, ::1] pair_fd, int32_t[::1] pair_rev, int num_threads):
    """Write the pairs of each group ``u`` of ``group_events`` from slot
    ``pair_start[u]`` on (``count_group_pairs``): keys, reverse slots, and sums added
    up event by event in the order given (``pair_key``, ``pair_fd``, ``pair_rev`` OUT
    for those slots).

    A group's pairs come in order of the partner's first event; a pair whose reverse
    also exists is followed by it (a pair of a user with itself is its own reverse).
    """
    cdef int64_t users = group_start.shape[0] - 1, u, e, slot, next_slot
    cdef int32_t t, lo
    cdef uint32_t v
    cdef int d
    seen_array = np.full((num_threads, users), -1, np.int32)
    dirs_array = np.zeros((num_threads, users), np.uint8)
    first_array = np.zeros((num_threads, users), np.int32)
    cdef int32_t[:, ::1] seen = seen_array
    cdef uint8_t[:, ::1] dirs = dirs_array
    cdef int32_t[:, ::1] first = first_array
    with nogil:
        for u in prange(users, schedule="dynamic", chunksize=256, num_threads=num_threads):
            t = threadid()
            lo = <int32_t>u
            _note_partners(partner, group_start[u], group_start[u + 1], lo,
                           &seen[t, 0], &dirs[t, 0])
            next_slot = pair_start[u]
            for e in range(group_start[u], group_start[u + 1]):
                v = partner[e] >> 1
                d = partner[e] & 1
                if (dirs[t, v] & 4) == 0:
                    # The partner's first event: give the pair (both directions) slots.
                    first[t, v] = <int32_t>next_slot
                    if dirs[t, v] == 3:
                        pair_key[next_slot] = (<uint64_t>lo << 32) | <uint64_t>v
                        pair_key[next_slot + 1] = (<uint64_t>v << 32) | <uint64_t>lo
                        pair_rev[next_slot] = <int32_t>(next_slot + 1)
                        pair_rev[next_slot + 1] = <int32_t>next_slot
                        next_slot = next_slot + 2
                    else:
                        if d == 0:
                            pair_key[next_slot] = (<uint64_t>lo << 32) | <uint64_t>v
                        else:
                            pair_key[next_slot] = (<uint64_t>v << 32) | <uint64_t>lo
                        pair_rev[next_slot] = <int32_t>next_slot if v == <uint32_t>lo else -1
                        next_slot = next_slot + 1
                    dirs[t, v] = dirs[t, v] | 4
                slot = first[t, v] + (d if (dirs[t, v] & 3) == 3 else 0)
                pair_fd[slot, kind[e]] += value[e]


def mark_dirty(const int32_t[::1] pair, const uint64_t[::1] pair_key,
               const int32_t[::1] pair_rev, uint8_t[::1] row_dirty,
               uint8_t[::1] target_dirty):
    """Flag the rows and targets whose trust edges or received sums a change to
    ``pair`` affects: the source row and the target, and, when the reverse pair
    exists (its reciprocity penalty moves too), the target's row and the source.
    ``row_dirty`` and ``target_dirty`` are INOUT.
    """
    cdef int64_t i, n = pair.shape[0]
    cdef int32_t p, src, dst
    with nogil:
        for i in range(n):
            p = pair[i]
            src = <int32_t>(pair_key[p] >> 32)
            dst = <int32_t>(pair_key[p] & <uint64_t>0xffffffff)
            row_dirty[src] = 1
            target_dirty[dst] = 1
            if pair_rev[p] >= 0:
                row_dirty[dst] = 1
                target_dirty[src] = 1


def in_volumes(const int32_t[::1] targets, const int32_t[::1] in_start,
               const int32_t[::1] in_length, const int32_t[::1] in_pair,
               const uint64_t[::1] pair_key, const double[:, ::1] pair_fd,
               const uint64_t[::1] eslot_bits, U64Index eslot_index,
               const uint64_t[::1] eslot_pair, const double[::1] e_sum,
               const uint8_t[::1] mature, double[::1] support, uint8_t[::1] moved,
               int num_threads):
    """``support[u] = sum_a m_a V(a -> u)`` (forward-decayed; ``m_a = mature[a]``, 1
    for an established sender) for the targets (INOUT); ``moved[u]`` set to 1 where it
    changed (INOUT): the reciprocity gate of every reciprocated pair touching u moves
    with it."""
    cdef int64_t i, n = targets.shape[0], e, last = in_pair.shape[0]
    cdef int32_t u, p
    cdef double total
    cdef Endorsed es = _endorsed_view(eslot_bits, eslot_index, eslot_pair, e_sum,
                                      pair_fd.shape[0])
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=256, num_threads=num_threads):
            u = targets[i]
            total = 0.0
            for e in range(in_start[u], in_start[u] + in_length[u]):
                if e + AHEAD < last:
                    p = in_pair[e + AHEAD]
                    __builtin_prefetch(&pair_key[p], 0, 1)
                    __builtin_prefetch(&pair_fd[p, 0], 0, 1)
                p = in_pair[e]
                if mature[<int32_t>(pair_key[p] >> 32)]:
                    total = total + _volume(p, pair_fd, &es)
            if total != support[u]:
                support[u] = total
                moved[u] = 1


def all_in_volumes(const uint64_t[::1] pair_key, const double[:, ::1] pair_fd,
                   const uint64_t[::1] eslot_bits, U64Index eslot_index,
                   const uint64_t[::1] eslot_pair, const double[::1] e_sum,
                   const uint8_t[::1] mature, double[::1] support,
                   double[:, ::1] support_more, int num_threads):
    """``in_volumes`` of every user (``support`` OUT), from one pass over the first
    ``len(pair_key)`` pair slots in slot order: the pairs stream where the targets'
    in-edges would jump about. Each thread adds one contiguous range of slots into
    a block of its own (the first's is ``support``, zeroed; the others are
    ``support_more``, zeros of shape (num_threads - 1, n_users)), folded in a fixed
    order, so the sums come out the same on every run."""
    cdef int64_t m = pair_key.shape[0], users = support.shape[0], t, p, u
    cdef int32_t src, dst
    cdef double* into
    if support_more.shape[0] < num_threads - 1 or (
            num_threads > 1 and support_more.shape[1] < users):
        raise ValueError("support_more has the wrong shape")
    cdef Endorsed es = _endorsed_view(eslot_bits, eslot_index, eslot_pair, e_sum,
                                      pair_fd.shape[0])
    with nogil:
        for t in prange(num_threads, schedule="static", chunksize=1,
                        num_threads=num_threads):
            into = &support[0] if t == 0 else &support_more[t - 1, 0]
            for p in range(_part(t, m, num_threads), _part(t + 1, m, num_threads)):
                if p + AHEAD < m:
                    __builtin_prefetch(&mature[<int32_t>(pair_key[p + AHEAD] >> 32)], 0, 1)
                    __builtin_prefetch(
                        &into[<int32_t>(pair_key[p + AHEAD] & <uint64_t>0xffffffff)], 1, 1)
                src = <int32_t>(pair_key[p] >> 32)
                if mature[src]:
                    dst = <int32_t>(pair_key[p] & <uint64_t>0xffffffff)
                    into[dst] += _volume(<int32_t>p, pair_fd, &es)
        for u in prange(users, schedule="static", num_threads=num_threads):
            for t in range(1, num_threads):
                support[u] += support_more[t - 1, u]


def mark_partners(const int32_t[::1] users, const int32_t[::1] start,
                  const int32_t[::1] length, const int32_t[::1] e_pair,
                  const uint64_t[::1] pair_key, const int32_t[::1] pair_rev,
                  uint8_t[::1] row_dirty, uint8_t[::1] target_dirty):
    """Flag, for each user u whose received volume moved, u's row and each
    reciprocating partner b (u -> b and b -> u both exist): b's row and both ends'
    sums, whose reciprocity gate reads u's volume (INOUT flags)."""
    cdef int64_t i, n = users.shape[0], e
    cdef int32_t u, p, b
    with nogil:
        for i in range(n):
            u = users[i]
            for e in range(start[u], start[u] + length[u]):
                p = e_pair[e]
                if pair_rev[p] >= 0:
                    b = <int32_t>(pair_key[p] & <uint64_t>0xffffffff)
                    row_dirty[u] = 1
                    target_dirty[u] = 1
                    row_dirty[b] = 1
                    target_dirty[b] = 1


def link_reverse(U64Index index, const uint64_t[::1] pair_key, int32_t first_new,
                 int32_t n_pairs, int32_t[::1] pair_rev):
    """Set ``pair_rev`` for the pairs ``[first_new, n_pairs)`` and their partners."""
    cdef int32_t p, q
    cdef uint64_t k, rk
    cdef int64_t h
    with nogil:
        for p in range(first_new, n_pairs):
            k = pair_key[p]
            rk = (k << 32) | (k >> 32)
            h = <int64_t>(_mix(rk) & <uint64_t>index.mask)
            while True:
                q = index.buckets[h]
                if q == -1 or pair_key[q] == rk:
                    break
                h = (h + 1) & index.mask
            pair_rev[p] = q
            if q >= 0:
                pair_rev[q] = p


def endorsement_sums(const int32_t[::1] slots, const int32_t[::1] eslot_head,
                     const int32_t[::1] rec_next, const double[::1] rec_ts,
                     const uint8_t[::1] rec_state, double weight, double landmark,
                     double half_life, double[::1] e_sum):
    """Recompute ``e_sum`` of the endorsement ``slots`` from their live records (e_sum
    INOUT); a slot's records are linked from ``eslot_head[slot]`` through ``rec_next``
    (-1 ends the list).

    Recomputing instead of adding and subtracting keeps "endorse then retract" exactly
    equal to "never endorsed"; the cost is the touched pairs' records only.
    """
    cdef int64_t i, n = slots.shape[0]
    cdef int32_t slot, j
    cdef double total, inv_h = 1.0 / half_life
    with nogil:
        for i in range(n):
            slot = slots[i]
            total = 0.0
            j = eslot_head[slot]
            while j >= 0:
                if rec_state[j] == REC_LIVE:
                    total += weight * exp2((rec_ts[j] - landmark) * inv_h)
                j = rec_next[j]
            e_sum[slot] = total


def csr_fill(const uint64_t[::1] pair_key, int shift, int32_t[::1] start,
             int32_t[::1] length, int32_t[::1] e_pair, int num_threads):
    """A plain CSR of the pairs ``[0, e_pair.shape[0])`` by their source (``shift``
    32) or destination (0): row ``a`` at ``e_pair[start[a] : start[a] + length[a]]``,
    slots ascending (all OUT; ``start`` and ``length`` cover every row). A stable
    counting sort; each thread counts and places one contiguous share of the pairs."""
    cdef int64_t m = e_pair.shape[0], rows = start.shape[0], t, i, a, total
    cdef int32_t row
    counts_array = np.zeros((num_threads, rows), np.int64)
    cdef int64_t[:, ::1] counts = counts_array
    cdef uint64_t low = 0xffffffff
    if m > INT32_MAX:
        raise OverflowError("the trust graph would exceed 2^31 edges")
    with nogil:
        for t in prange(num_threads, schedule="static", chunksize=1,
                        num_threads=num_threads):
            for i in range(_part(t, m, num_threads),
                           _part(t + 1, m, num_threads)):
                counts[t, <int32_t>((pair_key[i] >> shift) & low)] += 1
        total = 0
        for a in range(rows):
            start[a] = <int32_t>total
            for t in range(num_threads):
                i = counts[t, a]
                counts[t, a] = total
                total += i
            length[a] = <int32_t>(total - start[a])
        for t in prange(num_threads, schedule="static", chunksize=1,
                        num_threads=num_threads):
            for i in range(_part(t, m, num_threads),
                           _part(t + 1, m, num_threads)):
                row = <int32_t>((pair_key[i] >> shift) & low)
                e_pair[counts[t, row]] = <int32_t>i
                counts[t, row] += 1


def csr_reserve(const int32_t[::1] rows, const int64_t[::1] new_per_row,
                int32_t[::1] start, int32_t[::1] length, int32_t[::1] cap,
                int32_t[::1] e_pair, int64_t used):
    """Make room in row ``rows[i]`` (distinct, ascending) for ``new_per_row[i]`` more
    edges.

    Rows that would overflow move to the end of ``e_pair`` with room for twice their
    new length (a brand-new row gets exactly what it needs, so a cold build is a plain
    CSR with no slack).

    Returns the new ``used`` count, or ``-needed`` (nothing changed) when ``e_pair`` is
    shorter than ``needed``: grow it and call again.
    """
    cdef int64_t i, a, n = rows.shape[0], need = used, want, e, src, dst
    with nogil:
        for i in range(n):
            a = rows[i]
            if length[a] + new_per_row[i] > cap[a]:
                want = length[a] + new_per_row[i]
                if length[a] > 0 and want < 2 * length[a]:
                    want = 2 * length[a]
                need += want
    if need > INT32_MAX:
        # Row offsets are int32 to keep 4 bytes per user; 2^31 edges is ~30 GB of
        # per-edge state, past one machine: shard instead.
        raise OverflowError("the trust graph would exceed 2^31 edges")
    if need > e_pair.shape[0]:
        return -need
    with nogil:
        for i in range(n):
            a = rows[i]
            if length[a] + new_per_row[i] > cap[a]:
                want = length[a] + new_per_row[i]
                if length[a] > 0 and want < 2 * length[a]:
                    want = 2 * length[a]
                src = start[a]
                dst = used
                for e in range(length[a]):
                    e_pair[dst + e] = e_pair[src + e]
                start[a] = <int32_t>used
                cap[a] = <int32_t>want
                used += want
    return used


def csr_insert(const int32_t[::1] rows, const int32_t[::1] pairs,
               const int32_t[::1] start, int32_t[::1] length, int32_t[::1] e_pair):
    """Append pair ``pairs[i]`` to row ``rows[i]`` (after ``csr_reserve``)."""
    cdef int64_t i, n = rows.shape[0], pos
    with nogil:
        for i in range(n):
            pos = start[rows[i]] + length[rows[i]]
            length[rows[i]] += 1
            e_pair[pos] = pairs[i]


cdef inline void _compute_row(int32_t a, const int32_t[::1] start,
                              const int32_t[::1] length, const int32_t[::1] e_pair,
                              const uint64_t[::1] pair_key, const double[:, ::1] pair_fd,
                              const int32_t[::1] pair_rev, const Endorsed* es,
                              const double[::1] support,
                              const uint8_t[::1] mature, const uint8_t[::1] status,
                              double scale, double rho, double budget, double min_weight,
                              double[::1] pair_p, double[::1] beta, double[::1] out_d,
                              uint8_t[::1] beta_changed) noexcept nogil:
    """One row of ``compute_rows``."""
    cdef int64_t e, e0 = start[a], e1 = start[a] + length[a]
    cdef int32_t p
    cdef double given = 0.0, b_a = 1.0, d_a = 0.0
    cdef PairWeights pw
    for e in range(e0, e1):
        given = given + _endorsed(es, e_pair[e]) * scale
    if given > budget:
        b_a = budget / given
    for e in range(e0, e1):
        p = e_pair[e]
        pw = _pair_weights(p, pair_rev[p], pair_key, pair_fd, es, support, mature, rho,
                           scale)
        d_a = d_a + log1p(pw.raw) + b_a * pw.e
        pair_p[p] = log1p(pw.raw - pw.pen) + b_a * (pw.e - pw.cut)
    if d_a > 0.0 and d_a < min_weight:
        d_a = min_weight
    if beta[a] != b_a:
        beta_changed[a] = 1
    beta[a] = b_a
    out_d[a] = d_a
    for e in range(e0, e1):
        p = e_pair[e]
        if d_a > 0.0 and status[a] != STATUS_SUSPENDED:
            pair_p[p] = pair_p[p] / d_a
        else:
            pair_p[p] = 0.0


def compute_rows(const int32_t[::1] rows, const int32_t[::1] start,
                 const int32_t[::1] length, const int32_t[::1] e_pair,
                 const uint64_t[::1] pair_key, const double[:, ::1] pair_fd,
                 const int32_t[::1] pair_rev, const uint64_t[::1] eslot_bits,
                 U64Index eslot_index, const uint64_t[::1] eslot_pair,
                 const double[::1] e_sum, const double[::1] support,
                 const uint8_t[::1] mature, const uint8_t[::1] status, double scale,
                 double rho, double budget, double min_weight, double[::1] pair_p, double[::1] beta,
                 double[::1] out_d, uint8_t[::1] beta_changed, int num_threads):
    """Transition probabilities ``P(a -> b) = g(a -> b) / D_a`` of the given rows.

    Steps 3 to 6 of the model, evaluated at the decay ``scale = 2^((L - t) / H)``;
    ``support`` is each user's received volume from established senders
    (``in_volumes``), ``mature`` 1 for those senders, ``min_weight`` the
    least a non-empty row's ``D_a`` may be (kappa).
    Rows are independent, so they run in parallel (``prange``, dynamic schedule:
    power-law degrees make static chunks uneven). Every row at once:
    ``compute_all_rows``.

    Outputs: ``pair_p`` (OUT, the rows' pairs), ``beta`` and ``out_d`` (OUT, per row),
    ``beta_changed[a]`` set to 1 where beta moved (INOUT).
    """
    cdef int64_t i, n = rows.shape[0]
    cdef Endorsed es = _endorsed_view(eslot_bits, eslot_index, eslot_pair, e_sum,
                                      pair_fd.shape[0])
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=64, num_threads=num_threads):
            if i + 1 < n:
                _prefetch_row(rows[i + 1], start, length, e_pair, pair_key, pair_fd,
                              pair_rev)
            _compute_row(rows[i], start, length, e_pair, pair_key, pair_fd, pair_rev, &es,
                         support, mature, status, scale, rho, budget, min_weight, pair_p,
                         beta, out_d, beta_changed)


cdef inline void _prefetch_row(int32_t a, const int32_t[::1] start,
                               const int32_t[::1] length, const int32_t[::1] e_pair,
                               const uint64_t[::1] pair_key, const double[:, ::1] pair_fd,
                               const int32_t[::1] pair_rev) noexcept nogil:
    """Ask for the first pairs of row ``a`` (a row's pairs sit at random in the pair
    table) while the row before it is worked on; the loops over long rows ask ahead
    themselves."""
    cdef int64_t e, p
    for e in range(start[a], start[a] + min(length[a], AHEAD)):
        p = e_pair[e]
        __builtin_prefetch(&pair_fd[p, 0], 0, 1)
        __builtin_prefetch(&pair_key[p], 0, 1)
        __builtin_prefetch(&pair_rev[p], 0, 1)


cdef inline void _prefetch_pair(int64_t p, const uint64_t[::1] pair_key,
                                const double[:, ::1] pair_fd, const int32_t[::1] pair_rev,
                                const double[::1] support, double* sums) noexcept nogil:
    """Ask for what pair p's weights will read at random (its reverse's sums, its
    target's volume and explanation sums) while earlier pairs are worked on."""
    cdef int32_t q = pair_rev[p]
    if q >= 0:
        __builtin_prefetch(&pair_fd[q, 0], 0, 1)
    __builtin_prefetch(&support[<int32_t>(pair_key[p] & <uint64_t>0xffffffff)], 0, 1)
    __builtin_prefetch(sums, 1, 1)


cdef inline double* _sums_of(double[:, ::1] received, double[:, :, ::1] received_more,
                             int64_t t, int32_t u) noexcept nogil:
    """Thread ``t``'s explanation sums of user ``u`` in ``compute_all_rows``."""
    return &received[u, 0] if t == 0 else &received_more[t - 1, u, 0]


def compute_all_rows(const uint64_t[::1] pair_key, const double[:, ::1] pair_fd,
                     const int32_t[::1] pair_rev, const uint64_t[::1] eslot_bits,
                     U64Index eslot_index, const uint64_t[::1] eslot_pair,
                     const double[::1] e_sum, const double[::1] support,
                     const uint8_t[::1] mature, const uint8_t[::1] status, double scale,
                     double rho, double budget, double min_weight, double[::1] pair_p,
                     double[::1] beta, double[::1] out_d, uint8_t[::1] beta_changed,
                     double[:, :, ::1] row_sums, double[:, ::1] received,
                     double[:, :, ::1] received_more, int num_threads):
    """``compute_rows`` of every user, over the first ``len(pair_p)`` pair slots in
    slot order rather than row by row: the table keeps both directions of a pair side
    by side, so the pass streams where rows would jump about. The same values up to
    the order in which a row's terms are added. Also every user's explanation sums
    (``received``, OUT, shape (n_users, 5): the columns of ``received_sums``).

    Each thread owns one contiguous range of slots in every pass, and adds its terms
    to blocks of its own, folded in a fixed order, so the sums come out the same on
    every run: ``row_sums`` (zeros of shape (num_threads, n_users, 2)) per row, and
    per target ``received`` for the first thread and ``received_more`` (zeros of
    shape (num_threads - 1, n_users, 5)) for the others.
    """
    cdef int64_t m = pair_p.shape[0], users = beta.shape[0]
    cdef int64_t t, p, a
    cdef int32_t src, dst
    cdef double kept, given, b_a, d_a, e_eff
    cdef double* at
    cdef PairWeights pw
    if (row_sums.shape[0] < num_threads or row_sums.shape[1] < users
            or row_sums.shape[2] != 2 or received.shape[0] < users
            or received.shape[1] != 5 or received_more.shape[0] < num_threads - 1
            or (num_threads > 1 and (received_more.shape[1] < users
                                     or received_more.shape[2] != 5))):
        raise ValueError("row_sums, received or received_more has the wrong shape")
    cdef Endorsed es = _endorsed_view(eslot_bits, eslot_index, eslot_pair, e_sum,
                                      pair_fd.shape[0])
    with nogil:
        # Each pair's terms before the budget: kept weight into pair_p, and per row
        # the sum of log1p(raw) and of the endorsements given.
        for t in prange(num_threads, schedule="static", chunksize=1,
                        num_threads=num_threads):
            for p in range(_part(t, m, num_threads),
                           _part(t + 1, m, num_threads)):
                if p + AHEAD < m:
                    _prefetch_pair(p + AHEAD, pair_key, pair_fd, pair_rev, support,
                                   _sums_of(received, received_more, t, <int32_t>(
                                       pair_key[p + AHEAD] & <uint64_t>0xffffffff)))
                    __builtin_prefetch(&row_sums[t, <int32_t>(pair_key[p + AHEAD] >> 32), 0],
                                       1, 1)
                pw = _pair_weights(<int32_t>p, pair_rev[p], pair_key, pair_fd, &es,
                                   support, mature, rho, scale)
                src = <int32_t>(pair_key[p] >> 32)
                dst = <int32_t>(pair_key[p] & <uint64_t>0xffffffff)
                kept = log1p(pw.raw - pw.pen)
                pair_p[p] = kept
                row_sums[t, src, 0] += kept if pw.pen == 0.0 else log1p(pw.raw)
                row_sums[t, src, 1] += pw.e
                at = _sums_of(received, received_more, t, dst)
                at[0] += pw.raw
                at[1] += kept
                at[2] += pw.e
                at[4] += pw.pen + pw.cut
        # Per row: the budget factor and the row's total weight D_a.
        for a in prange(users, schedule="static", num_threads=num_threads):
            d_a = 0.0
            given = 0.0
            for t in range(num_threads):
                d_a = d_a + row_sums[t, a, 0]
                given = given + row_sums[t, a, 1]
            b_a = budget / given if given > budget else 1.0
            d_a = d_a + b_a * given
            if d_a > 0.0 and d_a < min_weight:
                d_a = min_weight
            if beta[a] != b_a:
                beta_changed[a] = 1
            beta[a] = b_a
            out_d[a] = d_a
        # Each pair's endorsements within its source's budget, and P = g / D_a.
        for t in prange(num_threads, schedule="static", chunksize=1,
                        num_threads=num_threads):
            for p in range(_part(t, m, num_threads),
                           _part(t + 1, m, num_threads)):
                src = <int32_t>(pair_key[p] >> 32)
                if _eslot(&es, p) >= 0:
                    pw = _pair_weights(<int32_t>p, pair_rev[p], pair_key, pair_fd, &es,
                                       support, mature, rho, scale)
                    e_eff = beta[src] * (pw.e - pw.cut)
                    pair_p[p] = pair_p[p] + e_eff
                    dst = <int32_t>(pair_key[p] & <uint64_t>0xffffffff)
                    _sums_of(received, received_more, t, dst)[3] += e_eff
                if out_d[src] > 0.0 and status[src] != STATUS_SUSPENDED:
                    pair_p[p] = pair_p[p] / out_d[src]
                else:
                    pair_p[p] = 0.0
        # The other threads' sums into the first's.
        for a in prange(users, schedule="static", num_threads=num_threads):
            for t in range(1, num_threads):
                for p in range(5):
                    received[a, p] += received_more[t - 1, a, p]


def received_sums(const int32_t[::1] targets, const int32_t[::1] in_start,
                  const int32_t[::1] in_length, const int32_t[::1] in_pair,
                  const uint64_t[::1] pair_key, const double[:, ::1] pair_fd,
                  const int32_t[::1] pair_rev, const uint64_t[::1] eslot_bits,
                  U64Index eslot_index, const uint64_t[::1] eslot_pair,
                  const double[::1] e_sum, const double[::1] support,
                  const uint8_t[::1] mature, const double[::1] beta, double scale,
                  double rho,
                  double[:, ::1] received, int num_threads):
    """What each target received, for the explanation (``received`` OUT rows):

    0 engagement before saturation ``sum_a sum_k W_k(a->u)``,
    1 engagement after reciprocity and saturation ``sum_a s(a->u)``,
    2 endorsements before penalties ``sum_a E(a->u)``,
    3 endorsements after reciprocity and budget ``sum_a e(a->u)``,
    4 weight removed by reciprocity (interactions and endorsements).
    """
    cdef int64_t i, n = targets.shape[0], e, e0, e1
    cdef int32_t u, p, a
    cdef double eng_raw, eng_sat, end_raw, end_eff, removed
    cdef PairWeights pw
    cdef Endorsed es = _endorsed_view(eslot_bits, eslot_index, eslot_pair, e_sum,
                                      pair_fd.shape[0])
    with nogil:
        for i in prange(n, schedule="dynamic", chunksize=64, num_threads=num_threads):
            if i + 1 < n:
                _prefetch_row(targets[i + 1], in_start, in_length, in_pair, pair_key,
                              pair_fd, pair_rev)
            u = targets[i]
            e0 = in_start[u]
            e1 = e0 + in_length[u]
            eng_raw = 0.0
            eng_sat = 0.0
            end_raw = 0.0
            end_eff = 0.0
            removed = 0.0
            for e in range(e0, e1):
                p = in_pair[e]
                a = <int32_t>(pair_key[p] >> 32)
                pw = _pair_weights(p, pair_rev[p], pair_key, pair_fd, &es, support,
                                   mature, rho, scale)
                eng_raw = eng_raw + pw.raw
                eng_sat = eng_sat + log1p(pw.raw - pw.pen)
                end_raw = end_raw + pw.e
                end_eff = end_eff + beta[a] * (pw.e - pw.cut)
                removed = removed + pw.pen + pw.cut
            received[u, 0] = eng_raw
            received[u, 1] = eng_sat
            received[u, 2] = end_raw
            received[u, 3] = end_eff
            received[u, 4] = removed


def scatter_rows(const int32_t[::1] rows, const int32_t[::1] start,
                 const int32_t[::1] length, const int32_t[::1] e_pair,
                 const uint64_t[::1] pair_key, const double[::1] pair_p,
                 const double[::1] x, double factor, double[::1] r):
    """``r[b] += factor * x[a] * P(a -> b)`` over the given rows (r INOUT).

    With ``factor = -d`` before and ``+d`` after a row changes, this restores the
    push invariant ``r = p + d P^T x - x`` for the new graph (Zhang, Lofgren and Goel,
    KDD 2016) at the cost of the changed rows only.
    """
    cdef int64_t i, n = rows.shape[0], e, e0, e1
    cdef int32_t p
    cdef double xa
    with nogil:
        for i in range(n):
            xa = factor * x[rows[i]]
            if xa == 0.0:
                continue
            e0 = start[rows[i]]
            e1 = e0 + length[rows[i]]
            for e in range(e0, e1):
                p = e_pair[e]
                r[<int32_t>(pair_key[p] & <uint64_t>0xffffffff)] += xa * pair_p[p]


def ppr_push(const int32_t[::1] start, const int32_t[::1] length,
             const int32_t[::1] e_pair, const uint64_t[::1] pair_key,
             const double[::1] pair_p, double damping,
             double tol_rel, double tol_abs, double[::1] x, double[::1] r,
             int32_t[::1] queue, uint8_t[::1] in_queue, int64_t max_work=-1,
             const double[::1] row_scale=None):
    """Residual push for ``x = p + d P^T x`` until no residual exceeds its tolerance.

    With ``row_scale`` it solves ``x = p + d P^T diag(row_scale) x`` instead: node u
    passes on only ``row_scale[u]`` of what it holds (distrust, docs/model.md step 8).

    Invariant: ``x_exact = x + (I - d P^T)^-1 r``. Pushing node u moves ``r_u`` into
    ``x_u`` and ``d P(u, v) r_u`` into each ``r_v``; residuals may be negative after
    edges change, so activity is tested on ``|r_u|``. On return every node satisfies
    ``|r_u| <= tol_rel * |x_u| + tol_abs``, which bounds each node's error by
    ``tol_rel`` times the mass reaching it along paths (docs/model.md).

    The FIFO order (a ring of size n; a node is queued at most once) makes the first
    sweep over a cold start behave like Gauss-Seidel. ``queue`` and ``in_queue`` are
    scratch of shape (n,); ``in_queue`` must be zero and is left zero.

    With ``max_work >= 0`` it gives up once it has touched that many edges (the
    invariant still holds; some residuals may exceed their tolerance).

    Returns (pushes, edges touched, whether every residual is within tolerance).
    """
    cdef int64_t n = x.shape[0], head = 0, count = 0, pushes = 0, work = 0
    cdef int64_t u, e, e0, e1, tail
    cdef int32_t v, p
    cdef double ru, du
    cdef bint done = True
    cdef bint scaled = row_scale is not None
    if n == 0:
        return 0, 0, True
    with nogil:
        for u in range(n):
            if fabs(r[u]) > tol_rel * fabs(x[u]) + tol_abs:
                queue[count] = <int32_t>u
                in_queue[u] = 1
                count += 1
        while count > 0:
            if max_work >= 0 and work > max_work:
                done = False
                break
            u = queue[head]
            head += 1
            if head == n:
                head = 0
            count -= 1
            in_queue[u] = 0
            ru = r[u]
            if not (fabs(ru) > tol_rel * fabs(x[u]) + tol_abs):
                continue
            x[u] += ru
            r[u] = 0.0
            pushes += 1
            du = damping * ru
            if scaled:
                du *= row_scale[u]
            e0 = start[u]
            e1 = e0 + length[u]
            work += e1 - e0
            for e in range(e0, e1):
                p = e_pair[e]
                v = <int32_t>(pair_key[p] & <uint64_t>0xffffffff)
                r[v] += du * pair_p[p]
                if not in_queue[v] and fabs(r[v]) > tol_rel * fabs(x[v]) + tol_abs:
                    tail = head + count
                    if tail >= n:
                        tail -= n
                    queue[tail] = v
                    in_queue[v] = 1
                    count += 1
        # Leave the scratch clean for the next call.
        while count > 0:
            in_queue[queue[head]] = 0
            head += 1
            if head == n:
                head = 0
            count -= 1
    return pushes, work, done


def top_in_edges(int32_t u, const int32_t[::1] in_start, const int32_t[::1] in_length,
                 const int32_t[::1] in_pair, const uint64_t[::1] pair_key,
                 const double[::1] pair_p,
                 const double[::1] credibility, double damping, int32_t k):
    """The k in-neighbours of u that contribute most credibility ``d c_a P(a -> u)``
    (``credibility`` may be in any units, as the solver's x).

    Returns (sources int32, contributions float64), largest first, ties by source.
    """
    cdef int64_t e, e0 = in_start[u], e1 = e0 + in_length[u], m = 0
    cdef int32_t a
    src = np.empty(e1 - e0, dtype=np.int32)
    val = np.empty(e1 - e0, dtype=np.float64)
    cdef int32_t[::1] src_v = src
    cdef double[::1] val_v = val
    with nogil:
        for e in range(e0, e1):
            a = <int32_t>(pair_key[in_pair[e]] >> 32)
            src_v[m] = a
            val_v[m] = damping * credibility[a] * pair_p[in_pair[e]]
            m += 1
    keep = val > 0
    src, val = src[keep], val[keep]
    order = np.lexsort((src, -val))[:k]
    return src[order], val[order]


def gather_pull(const int64_t[::1] pull_start, const int32_t[::1] in_start,
                const int32_t[::1] in_pair, const uint64_t[::1] pair_key,
                const double[::1] pair_p, int32_t[::1] pull_src, double[::1] pull_w,
                int num_threads):
    """A contiguous pull copy of the graph: for node v, its in-edges' sources and
    ``P(a -> v)`` at ``pull_*[pull_start[v] : pull_start[v + 1]]`` (OUT).

    Built for each full refresh (O(edges), parallel) so the Jacobi sweeps stream
    through memory instead of chasing pair slots twice per edge.
    """
    cdef int64_t v, n = pull_start.shape[0] - 1, e, off, p, last = in_pair.shape[0]
    with nogil:
        for v in prange(n, schedule="static", num_threads=num_threads):
            off = in_start[v] - pull_start[v]
            for e in range(pull_start[v], pull_start[v + 1]):
                if e + off + AHEAD < last:  # (room between rows: a harmless hint)
                    p = in_pair[e + off + AHEAD]
                    __builtin_prefetch(&pair_key[p], 0, 1)
                    __builtin_prefetch(&pair_p[p], 0, 1)
                p = in_pair[e + off]
                pull_src[e] = <int32_t>(pair_key[p] >> 32)
                pull_w[e] = pair_p[p]


def ppr_power_step(const int64_t[::1] pull_start, const int32_t[::1] pull_src,
                   const double[::1] pull_w, const double[::1] teleport, double damping,
                   const double[::1] c, double[::1] c_next, double tol_rel,
                   double tol_abs, int num_threads, double teleport_scale=1.0):
    """One step of the normalised iteration ``c' = d P^T c + (1 - sum(d P^T c)) p``
    (docs/model.md step 7; ``p`` is ``teleport_scale * teleport`` and sums to 1,
    ``c_next`` OUT).

    Renormalising puts the mass that leaks (reciprocity, dangling users) back at
    once, so this converges at the rate of the second eigenvalue, several times
    faster than iterating ``x = p + d P^T x``. Pull form: each node is written by
    one thread. Returns (nodes whose change exceeds the tolerance, sum(d P^T c)).
    """
    cdef int64_t v, n = teleport.shape[0], e, ahead = pull_src.shape[0] - GATHER_AHEAD
    cdef int64_t active = 0
    cdef double s, flow = 0.0, refill
    with nogil:
        for v in prange(n, schedule="static", num_threads=num_threads):
            s = 0.0
            for e in range(pull_start[v], pull_start[v + 1]):
                if e < ahead:
                    __builtin_prefetch(&c[pull_src[e + GATHER_AHEAD]], 0, 3)
                s = s + pull_w[e] * c[pull_src[e]]
            c_next[v] = damping * s
            flow += damping * s
        refill = (1.0 - flow) * teleport_scale
        for v in prange(n, schedule="static", num_threads=num_threads):
            c_next[v] = c_next[v] + refill * teleport[v]
            if fabs(c_next[v] - c[v]) > tol_rel * c_next[v] + tol_abs:
                active += 1
    return active, flow


def ppr_residual_pull(const int64_t[::1] pull_start, const int32_t[::1] pull_src,
                      const double[::1] pull_w, const double[::1] teleport,
                      double damping, const double[::1] x, double[::1] r,
                      int num_threads):
    """The exact push residual ``r = p + d P^T x - x`` (OUT), in parallel."""
    cdef int64_t v, n = teleport.shape[0], e, ahead = pull_src.shape[0] - GATHER_AHEAD
    cdef double s
    with nogil:
        for v in prange(n, schedule="static", num_threads=num_threads):
            s = 0.0
            for e in range(pull_start[v], pull_start[v + 1]):
                if e < ahead:
                    __builtin_prefetch(&x[pull_src[e + GATHER_AHEAD]], 0, 3)
                s = s + pull_w[e] * x[pull_src[e]]
            r[v] = teleport[v] + damping * s - x[v]


def merge_orders(const double[::1] left_values, const int64_t[::1] left,
                 const double[::1] right_values, const int64_t[::1] right,
                 int64_t[::1] out):
    """Merge two ascending runs, ``left_values`` (the values at positions ``left``)
    and ``right_values``, into ``out`` (OUT, their combined length): the positions
    in ascending order of value, ``left``'s first among equal values."""
    cdef int64_t i = 0, j = 0, k = 0, n_left = left.shape[0], n_right = right.shape[0]
    if (left_values.shape[0] != n_left or right_values.shape[0] != n_right
            or out.shape[0] != n_left + n_right):
        raise ValueError("runs and their values differ in length, or out is not both")
    with nogil:
        while i < n_left and j < n_right:
            if right_values[j] < left_values[i]:
                out[k] = right[j]
                j += 1
            else:
                out[k] = left[i]
                i += 1
            k += 1
        while i < n_left:
            out[k] = left[i]
            i += 1
            k += 1
        while j < n_right:
            out[k] = right[j]
            j += 1
            k += 1


def count_below(const int32_t[::1] ranking, const double[::1] x, const double[::1] values,
                int64_t[::1] out):
    """``out[i]`` = how many ranked users have ``x`` strictly below ``values[i]``
    (``ranking`` sorts users by ``x`` ascending): a binary search each, no sorted copy
    of the values kept. Keeps the GIL: the work is microseconds, and releasing the GIL
    costs a hand-off between server threads."""
    cdef int64_t i
    for i in range(values.shape[0]):
        out[i] = _rank(ranking, x, values[i])


def rank_of(const int32_t[::1] ranking, const double[::1] x, double value):
    """``count_below`` for one value, without building arrays (the Score path)."""
    return _rank(ranking, x, value)


def reserve_index(U64Index index, const uint64_t[::1] stored, int64_t keys):
    """Size ``index``'s buckets for ``keys`` keys at once (those it holds are in
    ``stored``), so inserting up to that many never rehashes. Raises MemoryError."""
    cdef int64_t capacity = index.mask + 1
    cdef int failed = 0
    if index.size > stored.shape[0]:
        raise ValueError("stored is smaller than the index")
    while keys * 10 > capacity * 7:
        capacity *= 2
    if capacity == index.mask + 1:
        return
    if index.size == 0:
        failed = index._rehash(NULL, capacity)
    else:
        failed = index._rehash(&stored[0], capacity)
    if failed:
        raise MemoryError()
