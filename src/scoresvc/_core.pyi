# Hand-written stub of scoresvc._core (mirrors the def signatures in _core.pyx).
import numpy as np
import numpy.typing as npt

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
I8 = npt.NDArray[np.int8]
F64 = npt.NDArray[np.float64]

class U64Index:
    def __init__(self) -> None: ...
    def __len__(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    def get_or_insert(self, keys: U64, stored: U64, out: I32, start: int = 0) -> int: ...
    def lookup(self, keys: U64, stored: U64, out: I32) -> None: ...
    def add_ids(self, stored_hash: U64, first: int, last: int) -> None: ...

def hash_ids(blob: U8, offsets: I64, out: U64) -> None: ...

class BytesIndex(U64Index):
    def lookup_ids(
        self,
        hashes: U64,
        blob: U8,
        offsets: I64,
        stored_hash: U64,
        stored_blob: U8,
        stored_offsets: I64,
        out: I32,
    ) -> None: ...

def pack_pair_keys(dense: I64, actor: I64, target: I64, keys: U64) -> None: ...
def accumulate(
    pair: I32,
    channel: I8,
    ts: F64,
    count: F64,
    channel_weight: F64,
    landmark: float,
    half_life: float,
    pair_fd: F64,
) -> None: ...
def keep_earliest(
    users: I64, times: F64, earliest: F64, num_threads: int = 1, others: I64 | None = None
) -> None: ...
def group_events(
    dense: I64,
    actor: I64,
    target: I64,
    channel: I8,
    ts: F64,
    count: F64,
    channel_weight: F64,
    landmark: float,
    half_life: float,
    extra_a: I64,
    extra_b: I64,
    group_start: I64,
    partner: npt.NDArray[np.uint32],
    kind: I8,
    value: F64,
    num_threads: int,
) -> None: ...
def count_group_pairs(
    group_start: I64, partner: npt.NDArray[np.uint32], pairs_of: I64, num_threads: int
) -> None: ...
def build_pairs(
    group_start: I64,
    partner: npt.NDArray[np.uint32],
    kind: I8,
    value: F64,
    pair_start: I64,
    pair_key: U64,
    pair_fd: F64,
    pair_rev: I32,
    num_threads: int,
) -> None: ...
def mark_dirty(
    pair: I32, pair_key: U64, pair_rev: I32, row_dirty: U8, target_dirty: U8
) -> None: ...
def all_in_volumes(
    pair_key: U64,
    pair_fd: F64,
    eslot_bits: U64,
    eslot_index: U64Index | None,
    eslot_pair: U64,
    e_sum: F64,
    mature: U8,
    support: F64,
    support_more: F64,
    num_threads: int,
) -> None: ...
def in_volumes(
    targets: I32,
    in_start: I32,
    in_length: I32,
    in_pair: I32,
    pair_key: U64,
    pair_fd: F64,
    eslot_bits: U64,
    eslot_index: U64Index | None,
    eslot_pair: U64,
    e_sum: F64,
    mature: U8,
    support: F64,
    moved: U8,
    num_threads: int,
) -> None: ...
def mark_partners(
    users: I32,
    start: I32,
    length: I32,
    e_pair: I32,
    pair_key: U64,
    pair_rev: I32,
    row_dirty: U8,
    target_dirty: U8,
) -> None: ...
def kept_shares(
    pairs: I32,
    pair_key: U64,
    pair_fd: F64,
    pair_rev: I32,
    eslot_bits: U64,
    eslot_index: U64Index | None,
    eslot_pair: U64,
    e_sum: F64,
    support: F64,
    mature: U8,
    rho: float,
    out: F64,
) -> None: ...
def link_reverse(
    index: U64Index, pair_key: U64, first_new: int, n_pairs: int, pair_rev: I32
) -> None: ...
def endorsement_sums(
    slots: I32,
    eslot_head: I32,
    rec_next: I32,
    rec_ts: F64,
    rec_state: U8,
    weight: float,
    landmark: float,
    half_life: float,
    e_sum: F64,
) -> None: ...
def csr_fill(
    pair_key: U64, shift: int, start: I32, length: I32, e_pair: I32, num_threads: int
) -> None: ...
def csr_reserve(
    rows: I32, new_per_row: I64, start: I32, length: I32, cap: I32, e_pair: I32, used: int
) -> int: ...
def csr_insert(rows: I32, pairs: I32, start: I32, length: I32, e_pair: I32) -> None: ...
def compute_rows(
    rows: I32,
    start: I32,
    length: I32,
    e_pair: I32,
    pair_key: U64,
    pair_fd: F64,
    pair_rev: I32,
    eslot_bits: U64,
    eslot_index: U64Index | None,
    eslot_pair: U64,
    e_sum: F64,
    support: F64,
    mature: U8,
    status: U8,
    scale: float,
    rho: float,
    budget: float,
    min_weight: float,
    pair_p: F64,
    beta: F64,
    out_d: F64,
    beta_changed: U8,
    num_threads: int,
) -> None: ...
def compute_all_rows(
    pair_key: U64,
    pair_fd: F64,
    pair_rev: I32,
    eslot_bits: U64,
    eslot_index: U64Index | None,
    eslot_pair: U64,
    e_sum: F64,
    support: F64,
    mature: U8,
    status: U8,
    scale: float,
    rho: float,
    budget: float,
    min_weight: float,
    pair_p: F64,
    beta: F64,
    out_d: F64,
    beta_changed: U8,
    row_sums: F64,
    received: F64,
    received_more: F64,
    num_threads: int,
) -> None: ...
def received_sums(
    targets: I32,
    in_start: I32,
    in_length: I32,
    in_pair: I32,
    pair_key: U64,
    pair_fd: F64,
    pair_rev: I32,
    eslot_bits: U64,
    eslot_index: U64Index | None,
    eslot_pair: U64,
    e_sum: F64,
    support: F64,
    mature: U8,
    beta: F64,
    scale: float,
    rho: float,
    received: F64,
    num_threads: int,
) -> None: ...
def scatter_rows(
    rows: I32,
    start: I32,
    length: I32,
    e_pair: I32,
    pair_key: U64,
    pair_p: F64,
    x: F64,
    factor: float,
    r: F64,
) -> None: ...
def ppr_push(
    start: I32,
    length: I32,
    e_pair: I32,
    pair_key: U64,
    pair_p: F64,
    damping: float,
    tol_rel: float,
    tol_abs: float,
    x: F64,
    r: F64,
    queue: I32,
    in_queue: U8,
    max_work: int = -1,
    row_scale: F64 | None = None,
) -> tuple[int, int, bool]: ...
def top_in_edges(
    u: int,
    in_start: I32,
    in_length: I32,
    in_pair: I32,
    pair_key: U64,
    pair_p: F64,
    credibility: F64,
    damping: float,
    k: int,
) -> tuple[I32, F64]: ...
def gather_pull(
    pull_start: I64,
    in_start: I32,
    in_pair: I32,
    pair_key: U64,
    pair_p: F64,
    pull_src: I32,
    pull_w: F64,
    num_threads: int,
) -> None: ...
def ppr_power_step(
    pull_start: I64,
    pull_src: I32,
    pull_w: F64,
    teleport: F64,
    damping: float,
    c: F64,
    c_next: F64,
    tol_rel: float,
    tol_abs: float,
    num_threads: int,
    teleport_scale: float = 1.0,
) -> tuple[int, float]: ...
def ppr_residual_pull(
    pull_start: I64,
    pull_src: I32,
    pull_w: F64,
    teleport: F64,
    damping: float,
    x: F64,
    r: F64,
    num_threads: int,
) -> None: ...
def merge_orders(left_values: F64, left: I64, right_values: F64, right: I64, out: I64) -> None: ...
def count_below(ranking: I32, x: F64, values: F64, out: I64) -> None: ...
def rank_of(ranking: I32, x: F64, value: float) -> int: ...
def reserve_index(index: U64Index, stored: U64, keys: int) -> None: ...
