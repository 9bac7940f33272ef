"""Type stub of the compiled write loops; the algorithm is documented at the top of ``_writer.c``."""

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer as _RawBuffer

Buffer = _RawBuffer | npt.NDArray[np.generic]

class Plan:
    """A compiled writer of one mapped type."""

    def __init__(
        self,
        kind: int,
        state: object,
        cls: type | None,
        fields: tuple[tuple[str, int, bool, int, int, Plan | None], ...],
        element: Plan | None,
        sort_elements: bool,
        python: Callable[[object], int],
        /,
    ) -> None: ...
    def set_child(self, index: int, plan: Plan, /) -> None: ...

def bump_epoch() -> None: ...
def set_bitset_type(cls: type, /) -> None: ...
def held(records: Sequence[object], /) -> bytes: ...
def object_stats(records: Sequence[object], kinds: bytes, /) -> tuple[list[int], list[int]]: ...
def encode_objects(
    records: Sequence[object], ordinals: Buffer, widths: tuple[int, ...], kinds: bytes, /
) -> tuple[bytes, tuple[bytes, ...]]: ...
def collection_stats(records: Sequence[object], kind: int, /) -> tuple[int, int, int, int]: ...
def shard_slots(records: Sequence[object], num_shards: int, kind: int, /) -> list[int]: ...
def encode_lists(
    records: Sequence[object], ordinals: Buffer, pointer_width: int, element_width: int, element_count: int, /
) -> tuple[bytes, bytes, int]: ...
def encode_sets(
    records: Sequence[object], ordinals: Buffer, pointer_width: int, size_width: int, element_width: int,
    bucket_count: int, /,
) -> tuple[bytes, bytes, int]: ...
def write(plan: Plan, value: object, /) -> int | None: ...
def write_all(plan: Plan, values: Sequence[object], start: int, /) -> int: ...
