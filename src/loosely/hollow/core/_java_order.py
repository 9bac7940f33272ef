"""The iteration order of Java's ``ConcurrentHashMap<String, String>`` (JDK 8-21), for header tags.

Java Hollow keeps header tags in a ``ConcurrentHashMap`` and writes them in its iteration order, so a blob
with two or more tags is only byte-identical to Java's if the tags come out in the same order.  That order is
a pure function of the operations, which this class replays:

* a table of power-of-two size (16 on first insertion, or sized by ``putAll``'s pre-sizing); a key goes to bin
  ``spread(hash) & (n - 1)`` with ``spread(h) = (h ^ (h >>> 16)) & 0x7fffffff`` and ``hash`` the Java
  ``String.hashCode``; a new key is appended to its bin's list, an existing key keeps its place;
* the table doubles when the count reaches ``0.75 n``; each bin splits into a "low" and a "high" list: the
  trailing run of nodes that go to the same side keeps its order, the nodes before it are prepended one by
  one (so they end up reversed) -- the ``lastRun`` optimisation of ``ConcurrentHashMap.transfer``;
* ``clear()`` keeps the table size; ``putAll`` first pre-sizes the table for 1.5x the incoming size.

Tree bins (8 keys in one bin of a table of 64 or more) are not reproduced; nobody has that many header tags.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from loosely.hollow.core._encoding import java_string_hash

__all__ = ["JavaConcurrentHashMap", "java_hash_map_order"]

_TREEIFY_THRESHOLD = 8
_MIN_TREEIFY_CAPACITY = 64
_DEFAULT_CAPACITY = 16
_MAXIMUM_CAPACITY = 1 << 30


def _spread(h: int) -> int:
    h &= 0xFFFFFFFF
    return (h ^ (h >> 16)) & 0x7FFFFFFF


def _table_size_for(c: int) -> int:
    n = 1
    while n < c:
        n <<= 1
    return min(n, _MAXIMUM_CAPACITY)


class JavaConcurrentHashMap:
    """A ``str -> str`` map whose iteration order is that of Java's ``ConcurrentHashMap``."""

    __slots__ = ("_bins", "_count", "_size_ctl")

    def __init__(self) -> None:
        self._bins: list[list[tuple[int, str, str]]] | None = None
        self._size_ctl = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        for bin_ in self._bins or []:
            for _, key, _ in bin_:
                yield key

    def items(self) -> Iterator[tuple[str, str]]:
        for bin_ in self._bins or []:
            for _, key, value in bin_:
                yield key, value

    def get(self, key: str) -> str | None:
        for k, v in self.items():
            if k == key:
                return v
        return None

    def as_dict(self) -> dict[str, str]:
        return dict(self.items())

    def _init_table(self, n: int) -> None:
        self._bins = [[] for _ in range(n)]
        self._size_ctl = n - (n >> 2)

    def _transfer(self) -> None:
        assert self._bins is not None
        n = len(self._bins)
        new: list[list[tuple[int, str, str]]] = [[] for _ in range(2 * n)]
        for i, nodes in enumerate(self._bins):
            if not nodes:
                continue
            run_bit = nodes[0][0] & n
            last_run = 0
            for j in range(1, len(nodes)):
                b = nodes[j][0] & n
                if b != run_bit:
                    run_bit = b
                    last_run = j
            low: list[tuple[int, str, str]] = []
            high: list[tuple[int, str, str]] = []
            if run_bit == 0:
                low = list(nodes[last_run:])
            else:
                high = list(nodes[last_run:])
            for node in nodes[:last_run]:
                if node[0] & n == 0:
                    low.insert(0, node)
                else:
                    high.insert(0, node)
            new[i] = low
            new[i + n] = high
        self._bins = new
        self._size_ctl = (n << 1) - (n >> 1)

    def _try_presize(self, size: int) -> None:
        c = _MAXIMUM_CAPACITY if size >= (_MAXIMUM_CAPACITY >> 1) else _table_size_for(size + (size >> 1) + 1)
        while self._size_ctl >= 0:
            if not self._bins:
                self._init_table(max(self._size_ctl, c))
            elif c <= self._size_ctl or len(self._bins) >= _MAXIMUM_CAPACITY:
                break
            else:
                self._transfer()

    def put(self, key: str, value: str) -> None:
        if not self._bins:
            self._init_table(self._size_ctl if self._size_ctl > 0 else _DEFAULT_CAPACITY)
        assert self._bins is not None
        h = _spread(java_string_hash(key))
        nodes = self._bins[h & (len(self._bins) - 1)]
        for j, (nh, nk, _) in enumerate(nodes):
            if nh == h and nk == key:
                nodes[j] = (h, key, value)
                return
        nodes.append((h, key, value))
        if len(nodes) - 1 >= _TREEIFY_THRESHOLD and len(self._bins) < _MIN_TREEIFY_CAPACITY:
            self._try_presize(len(self._bins) << 1)
        self._count += 1
        while self._count >= self._size_ctl and len(self._bins) < _MAXIMUM_CAPACITY:
            self._transfer()

    def put_all(self, other: Mapping[str, str] | JavaConcurrentHashMap) -> None:
        items = list(other.items())
        self._try_presize(len(items))
        for k, v in items:
            self.put(k, v)

    def remove(self, key: str) -> None:
        """Drop ``key`` if present; the other keys keep their places (Java unlinks the node from its bin)."""
        if not self._bins:
            return
        h = _spread(java_string_hash(key))
        nodes = self._bins[h & (len(self._bins) - 1)]
        for j, (nh, nk, _) in enumerate(nodes):
            if nh == h and nk == key:
                del nodes[j]
                self._count -= 1
                return

    def clear(self) -> None:
        for nodes in self._bins or []:
            nodes.clear()
        self._count = 0


def java_hash_map_order(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Iteration order of a ``java.util.HashMap`` filled by ``put`` in the given order.

    Bins are ``(h ^ (h >>> 16)) & (n - 1)``; the table starts at 16 and doubles when the size exceeds 0.75 n;
    a resize keeps the relative order of each bin's nodes (no tree bins: they need 8 keys in one bin).
    """
    n = _DEFAULT_CAPACITY
    bins: list[list[tuple[int, str, str]]] = [[] for _ in range(n)]
    size = 0
    for key, value in items:
        h = java_string_hash(key) & 0xFFFFFFFF
        h ^= h >> 16
        nodes = bins[h & (n - 1)]
        for j, (_, k, _) in enumerate(nodes):
            if k == key:
                nodes[j] = (h, key, value)
                break
        else:
            nodes.append((h, key, value))
            size += 1
            if size > n - (n >> 2):
                new: list[list[tuple[int, str, str]]] = [[] for _ in range(2 * n)]
                for i, old in enumerate(bins):
                    for node in old:
                        new[i + n if node[0] & n else i].append(node)
                bins = new
                n *= 2
    return [(k, v) for nodes in bins for _, k, v in nodes]
