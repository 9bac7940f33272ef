"""Physical floors: what this machine does with the same bytes, measured in the benchmark's own run (issue 18).

A ratio against another program says who is ahead; it does not say how far either is from what the machine can
do. Each benchmark therefore also names the floor its figure is bounded by and prints the ratio to it:

* ``memcpy_bytes_per_s``: memory bandwidth, a copy between two buffers already faulted in (numpy's ``copyto``,
  which is ``memcpy`` for contiguous arrays), best of three. The floor of anything that moves bytes in memory
  (a Hollow delta apply writes the changed shards; nothing can do that faster than copying them).
* ``random_access_ns``: the latency of one dependent random memory access over a region of a given size, by a
  pointer chase: a random cycle through one slot per cache line, each step reading the index of the next, so no
  access can start before the previous one ends (what a hash lookup pays per probe). The chase runs in Python,
  so the same chase over a 16 KiB region (always in L1) is subtracted: the result is the memory's part. The
  machine's caches decide what "random" costs: over a region that fits the last-level cache it is the cache's
  latency, which is why callers pass the size of their own data.
* ``loopback_bytes_per_s``: TCP throughput over 127.0.0.1, a sender thread writing 1 MiB ``sendall``s and the
  caller's thread receiving with ``recv_into`` (both release the GIL in the system call). The floor of a broker
  and its clients on one machine: every byte produced or consumed crosses this socket at least once.
* ``disk_write_bytes_per_s``: sequential writes of 1 MiB to a file in the benchmark's own directory, then one
  ``fsync``, like ``dd bs=1M conv=fsync``; the file is removed afterwards. The floor of a durable log.
* ``disk_read_bytes_per_s``: the same file written and synced, its pages dropped from the page cache
  (``posix_fadvise(DONTNEED)``, which drops clean pages), then read back in 1 MiB ``readinto``s, like
  ``dd if=FILE of=/dev/null bs=1M`` on a cold cache. The floor of reading a log or a blob that is not in memory
  (one that is reads at the memcpy floor).
* ``tcp_round_trip_s``: the round trip of one small request and its answer over 127.0.0.1 (a thread answering
  ``answer_bytes`` to each ``request_bytes`` it reads, ``TCP_NODELAY`` on both ends), the median of many. The
  floor of any request/answer service on this machine: an HTTP page, a registry lookup, a Kafka request.
* ``interpreter_start_s``: the wall time of ``python -c pass`` (and of ``python -S -c pass``, without the site
  module and its ``.pth`` files), median of several: what any Python command line pays before its first line.
* ``dict_lookup_ns``: one Python function call doing one ``dict.get`` in a dict of a given size, best of a few
  rounds. Not a physical floor but the interpreter's: the least a check written in Python can cost (one hash
  probe; the memory under it is in the caches for any dict that fits them).

Each measurement stays well under two seconds (the sizes below are chosen for that on the 2-vCPU machines the
benchmarks run on), and each result says what it measured, so a benchmark prints the floor next to the ratio.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIB = 1 << 20
CACHE_LINE_BYTES = 64
L1_REGION_BYTES = 16 * 1024  # fits any L1 data cache: the chase's own (interpreter) cost


@dataclass(frozen=True, slots=True)
class Floor:
    """One floor: a value in ``unit`` and how it was measured, to print beside the benchmark's figures."""

    name: str
    value: float
    unit: str  # "B/s" or "ns"
    how: str

    def __str__(self) -> str:
        if self.unit == "B/s":
            shown = f"{self.value / 1e9:.2f} GB/s"
        elif self.value >= 1e6:
            shown = f"{self.value / 1e6:.2f} ms"
        elif self.value >= 1e4:
            shown = f"{self.value / 1e3:.1f} us"
        else:
            shown = f"{self.value:.1f} ns"
        return f"floor: {self.name} {shown} ({self.how})"

    @property
    def seconds(self) -> float:
        """The floor as seconds (time floors only)."""
        assert self.unit == "ns", self
        return self.value / 1e9

    def seconds_for(self, nbytes: float) -> float:
        """Time the floor takes for ``nbytes`` (throughput floors only)."""
        assert self.unit == "B/s", self
        return nbytes / self.value


def _load() -> str:
    """A floor measured on a loaded machine is lower than the machine's: say how loaded it was."""
    return f"; load average {os.getloadavg()[0]:.2f}"


def memcpy_bytes_per_s(nbytes: int = 256 * MIB, repeat: int = 3) -> Floor:
    src = np.ones(nbytes, dtype=np.uint8)  # written once: every page is faulted in before the clock starts
    dst = np.ones(nbytes, dtype=np.uint8)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return Floor("memcpy", nbytes / best, "B/s", f"numpy copy of {nbytes // MIB} MiB, best of {repeat}{_load()}")


def _chase_cycle(region_bytes: int, rng: np.random.Generator) -> np.ndarray:
    """An int32 array over ``region_bytes`` holding one random cycle through one slot per cache line."""
    stride = CACHE_LINE_BYTES // 4
    lines = max(2, region_bytes // CACHE_LINE_BYTES)
    slots = rng.permutation(lines).astype(np.int32) * stride
    chase = np.zeros(lines * stride, dtype=np.int32)
    chase[slots] = np.roll(slots, -1)  # each visited slot holds the index of the next: one cycle through all
    return chase


def _chase_ns(chase: np.ndarray, steps: int) -> float:
    view = memoryview(chase)
    i = 0
    for _ in range(min(steps, 1000)):  # warm the loop (and, for small regions, the cache)
        i = view[i]
    t = time.perf_counter_ns()
    for _ in range(steps):
        i = view[i]
    return (time.perf_counter_ns() - t) / steps


def random_access_ns(region_bytes: int = 256 * MIB, steps: int = 200_000, rounds: int = 5) -> Floor:
    rng = np.random.default_rng(18)
    big_chase, small_chase = _chase_cycle(region_bytes, rng), _chase_cycle(L1_REGION_BYTES, rng)
    # The two chases alternate and each keeps its best round: on a shared machine a neighbour's burst only ever
    # adds time, and it falls on both alike.
    big = small = float("inf")
    for _ in range(rounds):
        big = min(big, _chase_ns(big_chase, steps))
        small = min(small, _chase_ns(small_chase, steps))
    return Floor(
        "random access",
        max(big - small, 0.0),
        "ns",
        f"pointer chase over {region_bytes / MIB:.0f} MiB, one cache line per step, best of {rounds}, less the same "
        f"chase in L1 ({small:.0f} ns of interpreter per step){_load()}",
    )


def loopback_bytes_per_s(nbytes: int = 256 * MIB, chunk_bytes: int = MIB) -> Floor:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        payload = b"\0" * chunk_bytes
        chunks = nbytes // chunk_bytes

        def send() -> None:
            with socket.create_connection(("127.0.0.1", port)) as s:
                for _ in range(chunks):
                    s.sendall(payload)

        sender = threading.Thread(target=send, daemon=True)
        t = time.perf_counter()
        sender.start()
        conn, _ = server.accept()
        with conn:
            buf = bytearray(chunk_bytes)
            got = 0
            while got < chunks * chunk_bytes:
                n = conn.recv_into(buf)
                if n == 0:
                    break
                got += n
        seconds = time.perf_counter() - t
        sender.join()
    if got != chunks * chunk_bytes:
        raise RuntimeError(f"loopback floor: received {got} of {chunks * chunk_bytes} bytes")
    return Floor("loopback TCP", got / seconds, "B/s", f"{got // MIB} MiB over 127.0.0.1, one connection{_load()}")


def disk_write_bytes_per_s(directory: str | os.PathLike[str], nbytes: int = 256 * MIB,
                           chunk_bytes: int = MIB) -> Floor:
    path = Path(directory) / f".floor-{os.getpid()}.tmp"
    payload = os.urandom(chunk_bytes)
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(nbytes // chunk_bytes):
            os.write(fd, payload)
        os.fsync(fd)
        seconds = time.perf_counter() - t
    finally:
        os.close(fd)
        path.unlink()
    written = nbytes // chunk_bytes * chunk_bytes
    return Floor("disk write", written / seconds, "B/s",
                 f"{written // MIB} MiB in 1 MiB writes and one fsync to {directory}, like dd conv=fsync{_load()}")


def disk_read_bytes_per_s(directory: str | os.PathLike[str], nbytes: int = 256 * MIB,
                          chunk_bytes: int = MIB) -> Floor:
    path = Path(directory) / f".floor-read-{os.getpid()}.tmp"
    payload = os.urandom(chunk_bytes)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(nbytes // chunk_bytes):
            os.write(fd, payload)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # clean pages leave the cache: the read goes to the disk
        os.lseek(fd, 0, os.SEEK_SET)
        buf = bytearray(chunk_bytes)
        got = 0
        t = time.perf_counter()
        while n := os.readv(fd, [buf]):
            got += n
        seconds = time.perf_counter() - t
    finally:
        os.close(fd)
        path.unlink()
    return Floor("disk read", got / seconds, "B/s",
                 f"{got // MIB} MiB in 1 MiB reads from {directory}, cache dropped first, like dd of=/dev/null"
                 f"{_load()}")


def tcp_round_trip_s(request_bytes: int = 100, answer_bytes: int = 200, rounds: int = 2000) -> Floor:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                reply = b"\0" * answer_bytes
                while True:
                    got = 0
                    while got < request_bytes:
                        chunk = conn.recv(request_bytes - got)
                        if not chunk:
                            return
                        got += len(chunk)
                    conn.sendall(reply)

        answerer = threading.Thread(target=answer, daemon=True)
        answerer.start()
        times = []
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = b"\0" * request_bytes
            for _ in range(rounds):
                t = time.perf_counter()
                s.sendall(request)
                got = 0
                while got < answer_bytes:
                    chunk = s.recv(answer_bytes - got)
                    if not chunk:
                        raise RuntimeError("round-trip floor: the answering thread closed the connection")
                    got += len(chunk)
                times.append(time.perf_counter() - t)
        answerer.join(5)
    times.sort()
    return Floor("TCP round trip", times[len(times) // 2] * 1e9, "ns",
                 f"{request_bytes} B asked, {answer_bytes} B answered over 127.0.0.1, median of {rounds}{_load()}")


def interpreter_start_s(*flags: str, repeat: int = 10) -> Floor:
    argv = [sys.executable, *flags, "-c", "pass"]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append(time.perf_counter() - t)
    times.sort()
    shown = " ".join(["python", *flags, "-c", "pass"])
    return Floor(shown, times[len(times) // 2] * 1e9, "ns",
                 f"start and exit of {sys.executable}, median of {repeat}{_load()}")


def dict_lookup_ns(entries: int, calls: int = 200_000, rounds: int = 3) -> Floor:
    table = {f"resource-{i}": i for i in range(max(entries, 1))}
    keys = list(table)[:1000]

    def probe(key: str) -> object:
        return table.get(key)

    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter_ns()
        for i in range(calls):
            probe(keys[i % len(keys)])
        best = min(best, (time.perf_counter_ns() - t) / calls)
    return Floor("dict lookup", best, "ns",
                 f"one Python call doing one dict.get in a dict of {entries:,} keys, best of {rounds}{_load()}")


def time_ratio(label: str, seconds: float, floor_seconds: float) -> str:
    """A measured time against the floor's time for the same work: how many times the floor it took."""
    if seconds < 1e-3:  # a per-call figure: microseconds
        return (f"{label}: {seconds * 1e6:,.2f} us against the floor's {floor_seconds * 1e6:,.3f} us: "
                f"{seconds / floor_seconds:,.1f}x the floor")
    return (f"{label}: {seconds * 1e3:,.2f} ms against the floor's {floor_seconds * 1e3:,.3f} ms: "
            f"{seconds / floor_seconds:,.1f}x the floor")


def rate_ratio(label: str, bytes_per_s: float, floor: Floor) -> str:
    """A measured throughput against a throughput floor: the fraction of the floor reached."""
    share = bytes_per_s / floor.value
    return (f"{label}: {bytes_per_s / 1e6:,.1f} MB/s against {floor.name} {floor.value / 1e6:,.0f} MB/s: "
            f"{share:.2%} of the floor (1/{1 / share:,.0f})" if share > 0 else f"{label}: nothing measured")


def message_floors(messages: int, nbytes: int, *floors: Floor) -> str:
    """The message rates the throughput floors allow at this message size."""
    per_msg = nbytes / messages
    rates = ", ".join(f"{f.value / per_msg:,.0f} msg/s by {f.name}" for f in floors)
    return f"{per_msg:.1f} B a message: at the floors {rates}"


if __name__ == "__main__":  # the floors of this machine, on their own
    for measured in (memcpy_bytes_per_s(), random_access_ns(), loopback_bytes_per_s(),
                     disk_write_bytes_per_s(os.environ.get("TMPDIR", "/tmp")),
                     disk_read_bytes_per_s(os.environ.get("TMPDIR", "/tmp")), tcp_round_trip_s(),
                     interpreter_start_s(), interpreter_start_s("-S"), dict_lookup_ns(1000)):
        print(measured)
