"""A long catch-up: checked and kept batch by batch, never read before its checkpoint is
reached; the tree-only mode; entry parsing's fast path; signature checks in processes."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import MalformedError
from ledger.keys import SigningKey
from ledger.log.statement import Entry, statement_message
from ledger.replica import sync as sync_module
from ledger.replica.fetch import DirectoryFetcher
from ledger.replica.store import ReplicaStore
from ledger.replica.sync import BATCH_BUNDLES, Replica, _first_bad, _signature_checks, _signed_statement
from tests.fixtures.consortium import AMR, POLICY, T0
from tests.helpers import issue
from tests.replica_fixtures import NOW, Net

#: More entries than one batch holds, so a catch-up keeps several batches.
LONG = BATCH_BUNDLES * 256 + 700


@pytest.fixture(scope="module")
def long_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    net = Net(tmp_path_factory.mktemp("long"))
    net.append(AMR.id, [issue(i, time=T0 + i, claims=1) for i in range(LONG)])
    net.publish(AMR.id)
    yield net
    net.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReplicaStore]:
    s = ReplicaStore.open(tmp_path / "replica.db")
    yield s
    s.close()


def replica(store: ReplicaStore, workers: int = 1) -> Replica:
    return Replica(store=store, policy=POLICY, member_id=AMR.id, clock=lambda: NOW, workers=workers)


def statement_bytes(net: Net, index: int) -> bytes:
    return Entry.from_bytes(net.stores[AMR.id].entry(index)).signed.statement_bytes


def test_tampered_entry_deep_in_a_long_catch_up_is_caught_and_named(
    tmp_path: Path, long_log: Net, store: ReplicaStore
) -> None:
    bad = long_log.copy_tiles(AMR.id, tmp_path / "tampered")
    bundle = bad / "tile/entries/017"
    data = bytearray(bundle.read_bytes())
    data[-1] ^= 1
    bundle.write_bytes(bytes(data))
    result = replica(store).sync([DirectoryFetcher(root=bad)])
    assert not result.ok and result.size == 0
    assert "entry 4607 in tile/entries/017 does not hash to the checkpoint" in result.refused[0]
    (alert,) = store.alerts(AMR.id, kind="bad-source")
    assert alert.source == f"directory {bad}" and "entry 4607" in alert.message
    # the bundles before the bad one were checked and kept for a resume, but are no replica data
    assert store.resume_point(AMR.origin) == 17 * 256
    assert store.latest(AMR.id) is None
    assert store.find_statement(AMR.id, statement_bytes(long_log, 5)) is None
    resumed = replica(store).sync([long_log.source(AMR.id)])
    assert resumed.ok and resumed.size == LONG
    assert store.entries(AMR.origin, 0, LONG) == list(long_log.stores[AMR.id].entries(0, LONG))


def test_tree_only_sync_is_never_read_before_its_statements_are_checked(
    long_log: Net, store: ReplicaStore
) -> None:
    result = replica(store).sync([long_log.source(AMR.id)], statements=False)
    assert result.ok and result.size == LONG
    assert store.size(AMR.origin) == LONG and store.checked_size(AMR.origin) == 0
    assert store.latest(AMR.id) is None  # what verdicts read: no checked checkpoint yet
    assert store.find_statement(AMR.id, statement_bytes(long_log, 7)) is None
    assert store.entries(AMR.origin, LONG - 1, LONG) == [long_log.stores[AMR.id].entry(LONG - 1)]
    assert replica(store).check_statements() == LONG
    assert store.checked_size(AMR.origin) == LONG
    found = store.find_statement(AMR.id, statement_bytes(long_log, 7))
    assert found is not None and found.index == 7 and found.problem is None
    latest = store.latest(AMR.id)
    assert latest is not None and latest.size == LONG


def test_sync_with_statements_first_checks_what_a_tree_only_sync_kept(
    tmp_path: Path, store: ReplicaStore
) -> None:
    net = Net(tmp_path / "net")
    net.append(AMR.id, [issue(i, time=T0 + i) for i in range(300)])
    net.publish(AMR.id)
    assert replica(store).sync([net.source(AMR.id)], statements=False).size == 300
    net.append(AMR.id, [issue(300 + i, time=T0 + 300 + i) for i in range(20)])
    net.publish(AMR.id)
    result = replica(store).sync([net.source(AMR.id)])
    assert result.ok and result.size == 320 and store.checked_size(AMR.origin) == 320
    assert store.find_statement(AMR.id, statement_bytes(net, 299)) is not None
    assert store.find_statement(AMR.id, statement_bytes(net, 319)) is not None
    net.close()


@pytest.mark.slow
def test_signature_checks_in_worker_processes(
    monkeypatch: pytest.MonkeyPatch, long_log: Net, store: ReplicaStore
) -> None:
    monkeypatch.setattr(sync_module, "PARALLEL_MIN", 1)
    result = replica(store, workers=2).sync([long_log.source(AMR.id)])
    assert result.ok and result.size == LONG
    assert store.find_statement(AMR.id, statement_bytes(long_log, LONG - 1)) is not None


@pytest.mark.slow
def test_a_forged_signature_is_found_by_a_worker_process() -> None:
    key = SigningKey.generate()
    messages = [statement_message(i.to_bytes(2, "big") * 20) for i in range(300)]
    jobs = [(i, key.public_key.raw, key.sign(m), m) for i, m in enumerate(messages)]
    forged = list(jobs)
    forged[211] = (211, key.public_key.raw, key.sign(b"another statement"), messages[211])
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert [f.result() for f in _signature_checks(jobs, pool, 2)] == [None, None]
        assert [f.result() for f in _signature_checks(forged, pool, 2)] == [
            None,
            211,
        ]  # the second half of 300
    assert _first_bad(forged) == 211


def _entry(net: Net) -> bytes:
    return net.stores[AMR.id].entry(3)


@pytest.fixture(scope="module")
def one_entry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bytes]:
    net = Net(tmp_path_factory.mktemp("one"))
    net.append(AMR.id, [issue(i) for i in range(4)])
    yield _entry(net)
    net.close()


def _same_verdict(data: bytes) -> None:
    try:
        expected = Entry.from_bytes(data).signed
    except MalformedError as e:
        with pytest.raises(MalformedError) as got:
            _signed_statement(data)
        assert str(got.value) == str(e)
        return
    assert _signed_statement(data) == expected


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(0, 400), byte=st.integers(0, 255), at=st.integers(0, 400), mode=st.integers(0, 3))
def test_entry_fast_path_accepts_and_refuses_exactly_as_entry_from_bytes(
    one_entry: bytes, cut: int, byte: int, at: int, mode: int
) -> None:
    data = bytearray(one_entry)
    if mode == 0:
        data = data[: cut % (len(data) + 1)]
    elif mode == 1:
        data[at % len(data)] = byte
    elif mode == 2:
        data.insert(at % (len(data) + 1), byte)
    _same_verdict(bytes(data))


def test_a_catch_up_kept_tree_only_is_not_resumed_as_checked(
    tmp_path: Path, long_log: Net, store: ReplicaStore
) -> None:
    bad = long_log.copy_tiles(AMR.id, tmp_path / "tampered")
    (bad / "tile/entries/017").write_bytes(b"")
    assert not replica(store).sync([DirectoryFetcher(root=bad)], statements=False).ok
    assert store.resume_point(AMR.origin) == 17 * 256 and store.index_tip(AMR.origin) == 0
    result = replica(store).sync([long_log.source(AMR.id)])
    assert result.ok and result.size == LONG and store.checked_size(AMR.origin) == LONG
    assert store.index_tip(AMR.origin) == LONG
    found = store.find_statement(AMR.id, statement_bytes(long_log, 100))
    assert found is not None and found.index == 100


def test_statements_are_found_by_certificate_id_and_exact_bytes(long_log: Net, store: ReplicaStore) -> None:
    assert replica(store).sync([long_log.source(AMR.id)]).ok
    wanted = statement_bytes(long_log, 1234)
    found = store.find_statement(AMR.id, wanted)
    assert found is not None and found.index == 1234 and found.signed.statement_bytes == wanted
    # the same certificate id with other bytes, bytes that are no statement: in no entry
    other = issue(1234, time=T0 + 1, claims=1).to_bytes()
    assert other != wanted and store.find_statement(AMR.id, other) is None
    assert store.find_statement(AMR.id, wanted[:-1]) is None
    assert store.find_statement(AMR.id, b"") is None
    # a database made with the statement-hash index loses it on opening, and still finds
    path = store.path
    store._conn.execute("CREATE INDEX certs_by_statement ON certs (origin, stmt_hash)")
    with ReplicaStore.open(path) as again:
        names = [r[0] for r in again._conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
        assert "certs_by_statement" not in names and "certs_by_id" in names
        assert again.find_statement(AMR.id, wanted) is not None
