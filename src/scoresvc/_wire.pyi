# Hand-written stub of scoresvc._wire (mirrors the def signatures in _wire.pyx).
import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

def parse_interaction_rows(
    data: bytes,
) -> tuple[list[str], I64, I64, I64, F64, F64, str] | None: ...
def parse_interaction_columns(
    data: bytes,
) -> tuple[U8, I64, bytes, bytes, bytes, bytes, bytes, str] | None: ...
