"""The transaction state machine with explicit time: Kafka's rules as scenarios, and a hypothesis model of
producers, zombies, failing disks and timeouts."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from kio.schema.errors import ErrorCode

from loosely.broker.transactions.state import (
    EPOCH_MAX,
    TV2,
    AddPartitions,
    EndTxn,
    Event,
    Expire,
    InitProducerId,
    MarkersWritten,
    Persist,
    Persisted,
    Reply,
    Tick,
    TransactionalId,
    TxnLimits,
    TxnMetadata,
    TxnRequestId,
    TxnState,
    WriteMarkers,
    end_needs_new_producer_id,
    needs_new_producer_id,
    next_deadline,
    step,
)

TID = TransactionalId("tx")
TIMEOUT = 60_000
LIMITS = TxnLimits(expiration_ms=1_000_000, marker_retry_ms=1000)
P0 = frozenset({("t", 0)})
P01 = frozenset({("t", 0), ("t", 1)})


class Coordinator:
    """Plays the shell: persists (or fails to), writes markers (or fails to), collects replies."""

    def __init__(self) -> None:
        self.txn: TxnMetadata | None = None
        self.now = 1_000_000
        self.rid = 0
        self.replies: dict[TxnRequestId, Reply] = {}
        self.persisted: list[TxnMetadata] = []
        self.markers: list[WriteMarkers] = []
        self.disk_fails = False
        self.markers_fail = False
        self.next_pid = 100
        self.expired = False

    def run(self, ev: Event) -> None:
        self.txn, effects = step(self.txn, ev, self.now, limits=LIMITS)
        for eff in effects:
            if isinstance(eff, Reply):
                assert eff.request not in self.replies, "answered twice"
                self.replies[eff.request] = eff
            elif isinstance(eff, Persist):
                if self.disk_fails:
                    self.run(Persisted(eff.meta, eff.then, ErrorCode.coordinator_not_available))
                else:
                    self.persisted.append(eff.meta)
                    self.run(Persisted(eff.meta, eff.then))
            elif isinstance(eff, WriteMarkers):
                self.markers.append(eff)
                if not self.markers_fail:
                    self.run(MarkersWritten(eff.producer_epoch))
            elif isinstance(eff, Expire):
                self.expired = True

    def ask(self, make: object) -> Reply:
        self.rid += 1
        r = TxnRequestId(self.rid)
        self.run(make(r))  # type: ignore[operator]
        return self.replies[r]

    def init(self, expected: tuple[int, int] | None = None) -> Reply:
        pid = None
        if needs_new_producer_id(self.txn, expected):
            pid, self.next_pid = self.next_pid, self.next_pid + 1
        return self.ask(lambda r: InitProducerId(r, TID, TIMEOUT, expected, pid))

    def add(self, pid: int, epoch: int, parts: frozenset[tuple[str, int]] = P0) -> ErrorCode:
        return self.ask(lambda r: AddPartitions(r, pid, epoch, parts)).error

    def end(self, pid: int, epoch: int, commit: bool) -> ErrorCode:
        return self.ask(lambda r: EndTxn(r, pid, epoch, commit)).error

    def end2(self, pid: int, epoch: int, commit: bool) -> Reply:
        """EndTxn v5 (transactions version 2), handed a producer id when the shell would allocate one."""
        fresh = None
        if end_needs_new_producer_id(self.txn, TV2):
            fresh, self.next_pid = self.next_pid, self.next_pid + 1
        return self.ask(lambda r: EndTxn(r, pid, epoch, commit, TV2, fresh))

    def advance(self, ms: int) -> None:
        self.now += ms
        self.run(Tick())

    @property
    def state(self) -> TxnState | None:
        return self.txn.state if self.txn is not None else None


def test_init_commit_and_abort() -> None:
    c = Coordinator()
    r = c.init()
    assert (r.error, r.producer_id, r.producer_epoch) == (ErrorCode.none, 100, 0)
    assert c.state is TxnState.EMPTY
    assert c.add(100, 0, P01) == ErrorCode.none
    assert c.state is TxnState.ONGOING and c.txn is not None and c.txn.start_ms == c.now
    persisted = len(c.persisted)
    assert c.add(100, 0, P0) == ErrorCode.none
    assert len(c.persisted) == persisted, "adding partitions already in the transaction writes nothing"
    assert c.end(100, 0, commit=True) == ErrorCode.none
    assert c.markers[-1] == WriteMarkers(100, 0, True, P01)
    assert [m.state for m in c.persisted[-2:]] == [TxnState.PREPARE_COMMIT, TxnState.COMPLETE_COMMIT]
    assert c.state is TxnState.COMPLETE_COMMIT and c.txn is not None and not c.txn.partitions
    assert c.end(100, 0, commit=True) == ErrorCode.none  # a retried EndTxn
    assert c.end(100, 0, commit=False) == ErrorCode.invalid_txn_state
    assert c.add(100, 0) == ErrorCode.none
    assert c.end(100, 0, commit=False) == ErrorCode.none
    assert c.markers[-1] == WriteMarkers(100, 0, False, P0)
    assert c.state is TxnState.COMPLETE_ABORT


def test_wrong_producer_and_stale_epoch() -> None:
    c = Coordinator()
    c.init()
    assert c.add(999, 0) == ErrorCode.invalid_producer_id_mapping
    assert c.end(999, 0, commit=True) == ErrorCode.invalid_producer_id_mapping
    r = c.init()  # a second producer instance with the same transactional id
    assert (r.producer_id, r.producer_epoch) == (100, 1)
    assert c.add(100, 0) == ErrorCode.producer_fenced
    assert c.end(100, 0, commit=True) == ErrorCode.producer_fenced
    assert c.end(100, 1, commit=True) == ErrorCode.invalid_txn_state  # nothing open
    unknown = Coordinator()
    assert unknown.add(1, 0) == ErrorCode.invalid_producer_id_mapping


def test_init_while_a_transaction_is_open_aborts_it_under_a_new_epoch() -> None:
    c = Coordinator()
    c.init()
    c.add(100, 0, P01)
    r = c.init()
    assert r.error == ErrorCode.concurrent_transactions
    assert c.markers[-1] == WriteMarkers(100, 1, False, P01), "aborted with an epoch the old producer cannot use"
    assert c.state is TxnState.COMPLETE_ABORT
    r = c.init()
    assert (r.error, r.producer_epoch) == (ErrorCode.none, 2)


def test_a_timed_out_transaction_is_aborted_and_its_producer_fenced() -> None:
    c = Coordinator()
    c.init()
    c.add(100, 0)
    assert next_deadline(c.txn, LIMITS) == c.now + TIMEOUT
    c.advance(TIMEOUT - 1)
    assert c.state is TxnState.ONGOING
    c.advance(1)
    assert c.state is TxnState.COMPLETE_ABORT
    assert c.markers[-1] == WriteMarkers(100, 1, False, P0)
    assert c.end(100, 0, commit=True) == ErrorCode.producer_fenced


def test_markers_that_fail_are_retried_and_block_the_id_meanwhile() -> None:
    c = Coordinator()
    c.init()
    c.add(100, 0)
    c.markers_fail = True
    assert c.end(100, 0, commit=True) == ErrorCode.none
    assert c.state is TxnState.PREPARE_COMMIT
    assert c.add(100, 0) == ErrorCode.concurrent_transactions
    assert c.end(100, 0, commit=True) == ErrorCode.concurrent_transactions
    assert c.init().error == ErrorCode.concurrent_transactions
    c.markers_fail = False
    c.advance(LIMITS.marker_retry_ms)
    assert c.state is TxnState.COMPLETE_COMMIT
    assert len(c.markers) == 2


def test_a_prepare_state_found_after_a_restart_writes_its_markers() -> None:
    c = Coordinator()
    c.txn = TxnMetadata(TID, 100, 3, TIMEOUT, TxnState.PREPARE_ABORT, P01, c.now - 5, c.now - 5)
    assert next_deadline(c.txn, LIMITS) <= c.now  # type: ignore[operator]
    c.advance(0)
    assert c.markers == [WriteMarkers(100, 3, False, P01)]
    assert c.state is TxnState.COMPLETE_ABORT


def test_a_failed_write_changes_nothing_and_says_so() -> None:
    c = Coordinator()
    c.init()
    c.disk_fails = True
    assert c.add(100, 0) == ErrorCode.coordinator_not_available
    assert c.state is TxnState.EMPTY
    assert c.init().error == ErrorCode.coordinator_not_available
    assert c.txn is not None and c.txn.producer_epoch == 0


def test_kip_360_retries_and_epoch_exhaustion() -> None:
    c = Coordinator()
    c.init()
    r = c.init(expected=(100, 0))  # the producer recovers from an error: bump its own epoch
    assert (r.error, r.producer_epoch) == (ErrorCode.none, 1)
    r = c.init(expected=(100, 0))  # the same request retried: answered with the epoch it got
    assert (r.error, r.producer_epoch) == (ErrorCode.none, 1)
    assert c.init(expected=(55, 0)).error == ErrorCode.producer_fenced
    assert c.txn is not None
    c.txn = TxnMetadata(TID, 100, EPOCH_MAX - 1, TIMEOUT, TxnState.COMPLETE_COMMIT, frozenset(), -1, c.now)
    r = c.init()
    assert (r.error, r.producer_id, r.producer_epoch) == (ErrorCode.none, 101, 0), "a fresh producer id"


def test_idle_ids_expire() -> None:
    c = Coordinator()
    c.init()
    c.advance(LIMITS.expiration_ms - 1)
    assert not c.expired
    c.advance(1)
    assert c.expired and c.txn is None


class TxnModel(RuleBasedStateMachine):
    """Two producer instances sharing a transactional id, a flaky disk, markers that fail, time moving."""

    @initialize()
    def setup(self) -> None:
        self.c = Coordinator()
        self.instances: list[tuple[int, int] | None] = [None, None]
        self.epochs_seen: dict[int, int] = {}

    @rule(i=st.integers(0, 1))
    def init(self, i: int) -> None:
        r = self.c.init()
        if r.error == ErrorCode.none:
            self.instances[i] = (r.producer_id, r.producer_epoch)

    @rule(i=st.integers(0, 1), parts=st.sampled_from([P0, P01]))
    def add(self, i: int, parts: frozenset[tuple[str, int]]) -> None:
        me = self.instances[i]
        if me is not None:
            self.c.add(*me, parts)

    @rule(i=st.integers(0, 1), commit=st.booleans())
    def end(self, i: int, commit: bool) -> None:
        me = self.instances[i]
        if me is not None:
            self.c.end(*me, commit)

    @rule(i=st.integers(0, 1), commit=st.booleans())
    def end_v2(self, i: int, commit: bool) -> None:
        """EndTxn v5: the instance goes on with the id and epoch it is answered."""
        me = self.instances[i]
        if me is not None:
            r = self.c.end2(*me, commit)
            if r.error == ErrorCode.none:
                self.instances[i] = (r.producer_id, r.producer_epoch)

    @rule(i=st.integers(0, 1))
    def add_v2(self, i: int) -> None:
        """Produce v12's implicit add."""
        me = self.instances[i]
        if me is not None:
            self.c.ask(lambda r: AddPartitions(r, *me, P0, TV2))

    @rule(fails=st.booleans())
    def disk(self, fails: bool) -> None:
        self.c.disk_fails = fails

    @rule(fails=st.booleans())
    def markers(self, fails: bool) -> None:
        self.c.markers_fail = fails

    @rule(ms=st.sampled_from([0, 500, 1000, TIMEOUT]))
    def time_passes(self, ms: int) -> None:
        self.c.advance(ms)

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "c"):
            return
        t = self.c.txn
        if t is None:
            return
        if t.state in (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT):
            assert not t.partitions
        if t.state is TxnState.ONGOING:
            assert t.partitions and t.start_ms >= 0
        if t.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT):
            assert t.partitions or (t.state is TxnState.PREPARE_ABORT and t.client_version == TV2)
        assert t.producer_epoch >= self.epochs_seen.get(t.producer_id, 0), "an epoch went back"
        self.epochs_seen[t.producer_id] = t.producer_epoch
        # Only one instance can hold the current epoch; the other is fenced.
        current = [m for m in self.instances if m == (t.producer_id, t.producer_epoch)]
        assert len(current) <= 1 or self.instances[0] == self.instances[1]
        # Markers for a producer are written with an epoch at least as new as any data it could still write.
        for m in self.c.markers:
            assert m.producer_epoch <= t.producer_epoch or m.producer_id != t.producer_id

    def teardown(self) -> None:
        if not hasattr(self, "c"):
            return
        self.c.disk_fails = self.c.markers_fail = False
        self.c.advance(TIMEOUT)
        self.c.advance(LIMITS.marker_retry_ms)
        assert self.c.state not in (TxnState.ONGOING, TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)
        assert set(self.c.replies) == set(range(1, self.c.rid + 1)), "every request answered"


TestTxnModel = TxnModel.TestCase
TestTxnModel.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


def answer(r: Reply) -> tuple[ErrorCode, int, int]:
    return r.error, r.producer_id, r.producer_epoch


def test_version_2_bumps_the_epoch_at_every_end_and_recognises_retries() -> None:
    c = Coordinator()
    c.init()
    assert c.ask(lambda r: AddPartitions(r, 100, 0, P01, TV2)).error == ErrorCode.none
    assert c.txn is not None and c.txn.client_version == TV2
    assert answer(c.end2(100, 0, commit=True)) == (ErrorCode.none, 100, 1)
    assert c.markers[-1] == WriteMarkers(100, 1, True, P01), "the markers carry the new epoch"
    assert [(m.state, m.producer_epoch) for m in c.persisted[-2:]] == [
        (TxnState.PREPARE_COMMIT, 1),
        (TxnState.COMPLETE_COMMIT, 1),
    ]
    assert answer(c.end2(100, 0, commit=True)) == (ErrorCode.none, 100, 1)  # a retry: the epoch before the bump
    assert c.end2(100, 0, commit=False).error == ErrorCode.invalid_txn_state  # a retry, but of something else
    assert c.end2(100, 1, commit=True).error == ErrorCode.invalid_txn_state  # the next EndTxn: nothing to commit
    assert c.add(100, 0) == ErrorCode.producer_fenced
    assert answer(c.end2(100, 1, commit=False)) == (ErrorCode.none, 100, 2)  # an abort with nothing added bumps too
    assert c.markers[-1] == WriteMarkers(100, 2, False, frozenset())
    assert c.end2(100, 9, commit=False).error == ErrorCode.producer_fenced
    assert c.end2(999, 2, commit=False).error == ErrorCode.invalid_producer_id_mapping
    fresh = Coordinator()
    fresh.init()
    assert fresh.end2(100, 0, commit=True).error == ErrorCode.invalid_txn_state  # Empty: only an abort is allowed
    assert answer(fresh.end2(100, 0, commit=False)) == (ErrorCode.none, 100, 1)


def test_version_2_moves_to_the_next_producer_id_when_the_epoch_is_exhausted() -> None:
    c = Coordinator()
    c.next_pid = 200
    last = EPOCH_MAX - 1
    c.txn = TxnMetadata(TID, 100, last, TIMEOUT, TxnState.ONGOING, P0, c.now, c.now, client_version=TV2)
    assert answer(c.end2(100, last, commit=True)) == (ErrorCode.none, 200, 0)
    assert c.markers[-1] == WriteMarkers(100, EPOCH_MAX, True, P0), "the old id's markers, at the last epoch"
    prepared, completed = c.persisted[-2:]
    assert (prepared.producer_id, prepared.next_producer_id) == (100, 200)
    assert (completed.producer_id, completed.producer_epoch, completed.previous_producer_id) == (200, 0, 100)
    assert answer(c.end2(100, last, commit=True)) == (ErrorCode.none, 200, 0)  # a retry across the rotation
    assert c.add(200, 0) == ErrorCode.none


def test_a_version_2_rotation_found_prepared_after_a_restart_completes_under_the_next_id() -> None:
    c = Coordinator()
    c.txn = TxnMetadata(TID, 100, EPOCH_MAX, TIMEOUT, TxnState.PREPARE_COMMIT, P0, c.now - 5, c.now - 5,
                        previous_producer_id=100, client_version=TV2, next_producer_id=200)
    c.advance(0)
    assert c.markers == [WriteMarkers(100, EPOCH_MAX, True, P0)]
    assert c.txn is not None and (c.txn.state, c.txn.producer_id, c.txn.producer_epoch) == (
        TxnState.COMPLETE_COMMIT, 200, 0
    )
    assert answer(c.end2(100, EPOCH_MAX - 1, commit=True)) == (ErrorCode.none, 200, 0)  # the unanswered EndTxn


def test_version_2_end_while_markers_are_pending() -> None:
    c = Coordinator()
    c.init()
    c.add(100, 0)
    c.markers_fail = True
    assert answer(c.end2(100, 0, commit=True)) == (ErrorCode.none, 100, 1)
    assert c.state is TxnState.PREPARE_COMMIT
    assert c.end2(100, 0, commit=True).error == ErrorCode.concurrent_transactions  # a retry, still writing
    assert c.end2(100, 0, commit=False).error == ErrorCode.invalid_txn_state
    assert c.end2(100, 1, commit=True).error == ErrorCode.producer_fenced  # not a retry while preparing
    c.markers_fail = False
    c.advance(LIMITS.marker_retry_ms)
    assert c.state is TxnState.COMPLETE_COMMIT and c.txn is not None and c.txn.producer_epoch == 1
