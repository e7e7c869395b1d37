"""The replica: a verified copy of a member's log, synced from any source."""

from __future__ import annotations

import dataclasses
import gzip
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import FileError, StorageError, TooLargeError
from ledger.log.checkpoint import CosignatureSigner, cosign
from ledger.log.statement import Kind
from ledger.replica.fetch import DirectoryFetcher, Fetcher, HttpFetcher, NotFoundError, mirror_prefix
from ledger.replica.store import ReplicaStore
from ledger.replica.sync import Replica
from tests.fixtures.consortium import AMR, HEALTH, POLICY, PSB, T0, issue_reference
from tests.helpers import issue
from tests.replica_fixtures import NOW, WITNESS_KEYS, Net, licence, outside_mandate, status, write_tiles
from verifier.verdict import Code
from verifier.verifier import Verifier


class Flaky:
    """A source that fails after ``budget`` entry bundles (a dropped connection)."""

    def __init__(self, inner: Fetcher, budget: int) -> None:
        self.inner = inner
        self.budget = budget
        self.paths: list[str] = []

    @property
    def name(self) -> str:
        return "flaky " + self.inner.name

    def get(self, path: str, *, max_size: int) -> bytes:
        if path.startswith("tile/entries/"):
            if self.budget == 0:
                raise FileError(f"{path}: connection reset")
            self.budget -= 1
        self.paths.append(path)
        return self.inner.get(path, max_size=max_size)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path)
    yield n
    n.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReplicaStore]:
    s = ReplicaStore.open(tmp_path / "replica.db")
    yield s
    s.close()


def replica(store: ReplicaStore, member_id: str = AMR.id) -> Replica:
    return Replica(store=store, policy=POLICY, member_id=member_id, clock=lambda: NOW)


def fill(net: Net, n: int, start: int = 0) -> None:
    net.append(AMR.id, [issue(start + i, time=T0 + i) for i in range(n)])


def test_sync_from_a_plain_directory_copy_of_the_tiles(tmp_path: Path, net: Net, store: ReplicaStore) -> None:
    fill(net, 600)
    net.publish(AMR.id)
    copy = net.copy_tiles(AMR.id, tmp_path / "static")
    result = replica(store).sync([DirectoryFetcher(root=copy)])
    assert result.ok and result.size_before == 0 and result.size == 600
    assert result.source == f"directory {copy}"
    latest = replica(store).latest()
    assert latest is not None and latest.size == 600 and latest.newest_at == NOW - 60
    assert set(latest.cosigners) == {HEALTH.id, PSB.id}
    assert store.entries(AMR.origin, 0, 600) == list(net.stores[AMR.id].entries(0, 600))
    assert store.inclusion_proof(AMR.id, 599, 600) == net.stores[AMR.id].inclusion_proof(599, 600)


def test_incremental_sync_checks_consistency_and_adds_only_new_entries(net: Net, store: ReplicaStore) -> None:
    fill(net, 300)
    net.publish(AMR.id)
    assert replica(store).sync([net.source(AMR.id)]).size == 300
    fill(net, 5, start=300)
    net.publish(AMR.id)
    src = Flaky(net.source(AMR.id), budget=100)
    result = replica(store).sync([src])
    assert result.size_before == 300 and result.size == 305
    assert [p for p in src.paths if p.startswith("tile/entries/")] == ["tile/entries/001.p/49"]


def test_interrupted_catch_up_resumes_where_it_stopped(net: Net, store: ReplicaStore) -> None:
    fill(net, 700)
    net.publish(AMR.id)
    first = Flaky(net.source(AMR.id), budget=2)
    result = replica(store).sync([first])
    assert not result.ok and result.size == 0
    assert "connection reset" in result.refused[0]
    assert store.pending(AMR.origin) is not None
    second = Flaky(net.source(AMR.id), budget=100)
    result = replica(store).sync([second])
    assert result.ok and result.size == 700
    assert [p for p in second.paths if p.startswith("tile/entries/")] == ["tile/entries/002.p/188"]
    assert store.pending(AMR.origin) is None


@pytest.mark.parametrize("other_size", [500, 800])
def test_a_fork_of_an_interrupted_catch_up_is_evidence(
    tmp_path: Path, net: Net, store: ReplicaStore, other_size: int
) -> None:
    # A catch-up towards a witnessed checkpoint of size 700 stops after 512 entries;
    # then a second witnessed history of the log arrives, smaller (within what is
    # staged) or larger. Either way the log signed two contradicting trees.
    fill(net, 700)
    net.publish(AMR.id)
    assert not replica(store).sync([Flaky(net.source(AMR.id), budget=2)]).ok
    other = Net(tmp_path / "split")
    other.append(AMR.id, [issue(50_000 + i, time=T0) for i in range(other_size)])
    other.publish(AMR.id)
    result = replica(store).sync([other.source(AMR.id)])
    other.close()
    assert result.forked and not result.ok and result.size == 0
    (alert,) = store.forks(AMR.id)
    assert f"the checkpoint of size {other_size} contradicts the one of size 700" in alert.message
    assert not [a for a in store.alerts(AMR.id) if a.kind == "bad-source"]  # the source is not to blame
    assert store.pending(AMR.origin) is not None
    # the honest source still completes the catch-up; the evidence stays
    assert replica(store).sync([net.source(AMR.id)]).size == 700
    assert len(store.forks(AMR.id)) == 1


def test_tampered_tile_is_rejected_naming_its_source(tmp_path: Path, net: Net, store: ReplicaStore) -> None:
    fill(net, 300)
    net.publish(AMR.id)
    bad = net.copy_tiles(AMR.id, tmp_path / "tampered")
    tile = bad / "tile/0/000"
    data = bytearray(tile.read_bytes())
    data[40] ^= 1
    tile.write_bytes(bytes(data))
    result = replica(store).sync([DirectoryFetcher(root=bad), net.source(AMR.id)])
    assert result.ok and result.size == 300 and result.source == net.source(AMR.id).name
    assert f"directory {bad}" in result.refused[0] and "tile/0/000" in result.refused[0]
    alert = store.alerts(AMR.id, kind="bad-source")[0]
    assert alert.source == f"directory {bad}" and "tile/0/000" in alert.message


class _Oversize:
    """A source whose answers for paths under ``prefix`` are over the cap."""

    name = "http://hostile.example/"

    def __init__(self, inner: Fetcher, prefix: str) -> None:
        self.inner, self.prefix = inner, prefix

    def get(self, path: str, *, max_size: int) -> bytes:
        if path.startswith(self.prefix):
            raise TooLargeError(f"{self.name}{path}: larger than {max_size} bytes")
        return self.inner.get(path, max_size=max_size)


@pytest.mark.parametrize("prefix", ["tile/0/", "tile/entries/"])
def test_oversize_tiles_are_refused_and_kept_as_refused_data(
    net: Net, store: ReplicaStore, prefix: str
) -> None:
    fill(net, 300)
    net.publish(AMR.id)
    result = replica(store).sync([_Oversize(net.source(AMR.id), prefix)])
    assert not result.ok and "larger than" in result.refused[0]
    (alert,) = store.alerts(AMR.id, kind="bad-source")
    assert alert.source == _Oversize.name and prefix in alert.message


def test_tampered_entry_bundle_is_rejected(tmp_path: Path, net: Net, store: ReplicaStore) -> None:
    fill(net, 10)
    net.publish(AMR.id)
    bad = net.copy_tiles(AMR.id, tmp_path / "tampered")
    bundle = bad / "tile/entries/000.p/10"
    data = bytearray(bundle.read_bytes())
    data[-1] ^= 1
    bundle.write_bytes(bytes(data))
    result = replica(store).sync([DirectoryFetcher(root=bad)])
    assert not result.ok and result.size == 0
    assert "entry 9 in tile/entries/000.p/10 does not hash to the checkpoint" in result.refused[0]
    assert store.latest(AMR.id) is None


def test_checkpoint_below_the_witness_quorum_is_refused(net: Net, store: ReplicaStore) -> None:
    fill(net, 3)
    net.publish(AMR.id, witnesses=0)
    result = replica(store).sync([net.source(AMR.id)])
    assert not result.ok and "witness-quorum" in result.refused[0]
    assert store.size(AMR.origin) == 0


def test_checkpoint_signed_by_another_member_is_refused(net: Net, store: ReplicaStore) -> None:
    net.publish(PSB.id)
    result = replica(store, AMR.id).sync([net.source(PSB.id)])
    assert not result.ok and "not signed by any of its log keys" in result.refused[0]


def test_fork_at_the_same_size_is_kept_as_evidence(tmp_path: Path, net: Net, store: ReplicaStore) -> None:
    fill(net, 3)
    net.publish(AMR.id)
    replica(store).sync([net.source(AMR.id)])
    other = Net(tmp_path / "other")
    other.append(AMR.id, [issue(10 + i) for i in range(3)])
    other.publish(AMR.id)
    result = replica(store).sync([other.source(AMR.id)])
    other.close()
    assert result.forked and result.size == 3
    (alert,) = store.forks(AMR.id)
    assert "the roots differ at that size" in alert.message
    assert alert.note_a == net.notes[AMR.id] and alert.note_b == other.notes[AMR.id]
    assert alert.to_json()["kind"] == "fork"


def test_newer_cosignatures_refresh_the_as_of_time(net: Net, store: ReplicaStore) -> None:
    fill(net, 3)
    net.publish(AMR.id, at=NOW - 600)
    replica(store).sync([net.source(AMR.id)])
    net.publish(AMR.id, at=NOW - 5)
    result = replica(store).sync([net.source(AMR.id)])
    assert result.ok and result.checkpoint is not None and result.checkpoint.newest_at == NOW - 5


def test_statements_outside_mandate_are_kept_but_marked(net: Net, store: ReplicaStore) -> None:
    c = outside_mandate()
    net.append(PSB.id, [c.signed, status(PSB.id, issue_reference().cert_id, Kind.REVOKE, time=T0)])
    net.publish(PSB.id)
    assert replica(store, PSB.id).sync([net.source(PSB.id)]).size == 2
    entry = store.find_statement(PSB.id, c.signed.statement_bytes)
    assert entry is not None and entry.problem is not None and entry.problem.startswith("mandate:")
    (revoke,) = store.status_entries(issue_reference().cert_id)
    assert revoke.problem is not None and "may not revoke" in revoke.problem


def test_sync_over_http_from_a_node_mirror_path(net: Net, store: ReplicaStore) -> None:
    fill(net, 20)
    net.publish(AMR.id)
    prefix = "/" + mirror_prefix(AMR.origin)
    root = net.tiles_dir(AMR.id)

    def serve(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if not path.startswith(prefix) or not (root / path[len(prefix) :]).is_file():
            return httpx.Response(404)
        return httpx.Response(200, content=(root / path[len(prefix) :]).read_bytes())

    client = httpx.Client(transport=httpx.MockTransport(serve))
    src = HttpFetcher(base_url="http://127.0.0.1:8000" + prefix, client=client)
    assert replica(store).sync([src]).size == 20
    with pytest.raises(NotFoundError):
        src.get("tile/0/999", max_size=8192)


def test_partial_tile_gone_falls_back_to_the_full_one(tmp_path: Path, net: Net, store: ReplicaStore) -> None:
    fill(net, 100)
    old_note = net.publish(AMR.id)
    fill(net, 200, start=100)
    grown = net.copy_tiles(AMR.id, tmp_path / "grown")
    net.publish(AMR.id)
    write_tiles(net.stores[AMR.id], grown, net.notes[AMR.id])
    # the copy has grown past 256 entries: partial tiles of width 100 are gone
    for p in sorted(grown.rglob("*.p"), reverse=True):
        for child in p.iterdir():
            child.unlink()
        p.rmdir()
    (grown / "checkpoint").write_bytes(old_note)
    result = replica(store).sync([DirectoryFetcher(root=grown)])
    assert result.ok and result.size == 100


def _fetcher(respond: Callable[[httpx.Request], httpx.Response], **kw: float) -> HttpFetcher:
    client = httpx.Client(transport=httpx.MockTransport(respond))
    return HttpFetcher(base_url="http://127.0.0.1:8000/", client=client, **kw)


def test_compressed_sources_are_inflated_and_capped(net: Net, store: ReplicaStore) -> None:
    # tlog-tiles: entry bundles SHOULD be compressed at the HTTP layer.
    fill(net, 20)
    net.publish(AMR.id)
    root = net.tiles_dir(AMR.id)

    def serve(request: httpx.Request) -> httpx.Response:
        f = root / request.url.path.lstrip("/")
        if not f.is_file():
            return httpx.Response(404)
        assert request.headers["accept-encoding"] == "gzip, deflate"
        return httpx.Response(
            200, content=gzip.compress(f.read_bytes()), headers={"content-encoding": "gzip"}
        )

    assert replica(store).sync([_fetcher(serve)]).size == 20
    deflated = _fetcher(
        lambda r: httpx.Response(
            200, stream=_Drip(iter([zlib.compress(b"abc")])), headers={"content-encoding": "deflate"}
        )
    )
    assert deflated.get("checkpoint", max_size=3) == b"abc"
    for encoding, body, why in [
        ("br", b"x", "unsupported content encoding 'br'"),
        ("gzip", b"not gzip", "does not decompress"),
        ("gzip", gzip.compress(b"abc")[:-9], "truncated"),
    ]:
        bad = _fetcher(
            lambda r, e=encoding, b=body: httpx.Response(
                200, stream=_Drip(iter([b])), headers={"content-encoding": e}
            )
        )
        with pytest.raises(FileError, match=why):
            bad.get("checkpoint", max_size=100)


def test_a_gzip_bomb_is_inflated_only_up_to_the_cap() -> None:
    bomb = gzip.compress(bytes(64 << 20), compresslevel=9)  # 64 MiB of zeros in about 64 KiB
    chunks = [bomb[i : i + 4096] for i in range(0, len(bomb), 4096)]
    src = _fetcher(
        lambda r: httpx.Response(200, stream=_Drip(iter(chunks)), headers={"content-encoding": "gzip"})
    )
    tracemalloc.start()
    try:
        with pytest.raises(TooLargeError, match="larger than 8192 bytes"):
            src.get("tile/0/000", max_size=8192)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes held to refuse an 8 KiB tile"


def test_a_source_that_trickles_is_given_up_on() -> None:
    def drip() -> Iterator[bytes]:
        for _ in range(50):
            time.sleep(0.05)
            yield b"x"

    src = _fetcher(lambda r: httpx.Response(200, stream=_Drip(drip())), deadline=0.5)
    with pytest.raises(FileError, match=r"not received within 0.5 s"):
        src.get("checkpoint", max_size=1000)


class _Drip(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks


def test_directory_fetcher_refuses_paths_outside_its_root(tmp_path: Path) -> None:
    src = DirectoryFetcher(root=tmp_path)
    for path in ("../etc/passwd", "/etc/passwd", "tile//0", "tile/./0"):
        with pytest.raises(FileError, match="refusing to read"):
            src.get(path, max_size=10)


def test_replica_database_refuses_a_foreign_file(net: Net, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not a certledger replica database"):
        ReplicaStore.open(tmp_path / "logs" / f"{AMR.id}.db")


class Hostile:
    """A source that answers every path with the bytes hypothesis draws."""

    def __init__(self, answers: dict[str, bytes], fallback: Fetcher) -> None:
        self.answers = answers
        self.fallback = fallback

    @property
    def name(self) -> str:
        return "hostile"

    def get(self, path: str, *, max_size: int) -> bytes:
        key = "bundle" if path.startswith("tile/entries/") else "tile" if path.startswith("tile/") else path
        if key in self.answers:
            return self.answers[key][: max_size + 1]
        return self.fallback.get(path, max_size=max_size)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    n = Net(tmp_path_factory.mktemp("published"))
    n.append(AMR.id, [issue(i) for i in range(300)])
    n.publish(AMR.id)
    yield n
    n.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    answers=st.dictionaries(
        st.sampled_from(["checkpoint", "tile", "bundle"]),
        st.one_of(st.binary(max_size=600), st.binary(min_size=32, max_size=32).map(lambda b: b * 8)),
        min_size=1,
    )
)
def test_hostile_source_is_refused_never_crashes(
    answers: dict[str, bytes], published: Net, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with ReplicaStore.open(tmp_path_factory.mktemp("hostile") / "r.db") as s:
        result = Replica(store=s, policy=POLICY, member_id=AMR.id, clock=lambda: NOW).sync(
            [Hostile(answers, published.source(AMR.id))]
        )
        if result.ok:  # only if every answer it used happened to be the genuine bytes
            assert result.size == 300
            assert s.entries(AMR.origin, 0, 300) == list(published.stores[AMR.id].entries(0, 300))
        else:
            assert result.refused and result.size == 0 and s.latest(AMR.id) is None


def test_on_demand_sync_is_rate_limited_per_member(net: Net, store: ReplicaStore) -> None:
    fill(net, 1)
    net.publish(AMR.id)
    calls: list[str] = []

    class Counting:
        name = "counting"

        def get(self, path: str, *, max_size: int) -> bytes:
            calls.append(path)
            return net.source(AMR.id).get(path, max_size=max_size)

    clock = [float(NOW)]
    v = Verifier(
        policy=POLICY, store=store, sources=lambda m: [Counting()], clock=lambda: clock[0], min_interval=2.0
    )
    text = licence("2024000404").to_qr_text()
    assert v.verify(text).code == Code.NOT_IN_LEDGER
    assert v.verify(text).code == Code.NOT_IN_LEDGER
    assert calls.count("checkpoint") == 1
    clock[0] += 3
    v.verify(text)
    assert calls.count("checkpoint") == 2


def test_a_lagging_mirror_does_not_end_the_sync(tmp_path: Path, net: Net, store: ReplicaStore) -> None:
    fill(net, 3)
    net.publish(AMR.id)
    lagging = net.copy_tiles(AMR.id, tmp_path / "lagging")
    replica(store).sync([DirectoryFetcher(root=lagging)])
    fill(net, 2, start=3)
    net.publish(AMR.id)
    result = replica(store).sync([DirectoryFetcher(root=lagging), net.source(AMR.id)])
    assert result.ok and result.size == 5 and result.source == net.source(AMR.id).name


def test_one_witness_with_a_fast_clock_cannot_move_the_as_of_time(net: Net, store: ReplicaStore) -> None:
    fill(net, 1)
    note = net.publish(AMR.id, at=NOW - 60, witnesses=1)  # health cosigns a minute ago
    psb = CosignatureSigner(name=PSB.witness_key.name, key=WITNESS_KEYS[PSB.id])
    (net.tiles_dir(AMR.id) / "checkpoint").write_bytes(cosign(note, psb, timestamp=NOW + 86400))
    two = dataclasses.replace(POLICY, witness_quorum=2)
    result = Replica(store=store, policy=two, member_id=AMR.id, clock=lambda: NOW).sync([net.source(AMR.id)])
    assert result.checkpoint is not None
    # the quorum of two attests no later than a minute ago; it was complete only with the second
    assert result.checkpoint.newest_at == NOW - 60 and result.checkpoint.witnessed_at == NOW + 86400
    assert set(result.checkpoint.cosigners) == {HEALTH.id, PSB.id}


def test_two_syncs_racing_without_a_lock_refuse_rather_than_corrupt(net: Net, store: ReplicaStore) -> None:
    fill(net, 600)
    net.publish(AMR.id)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(replica(store).sync([net.source(AMR.id)])))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and any(r.ok for r in results)
    for r in results:
        assert r.ok or any("changed during the sync" in why for why in r.refused)
    assert store.size(AMR.origin) == 600
    assert store.entries(AMR.origin, 0, 600) == list(net.stores[AMR.id].entries(0, 600))
