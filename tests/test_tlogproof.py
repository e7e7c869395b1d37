"""C2SP tlog-proof: round trips, the spec example, strict parsing, tampering, truncation, fuzzing."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError, MalformedError, ProofError, SignatureError, TooLargeError
from ledger.keys import SigningKey
from ledger.log import merkle, note, tlogproof
from ledger.log.checkpoint import Checkpoint, CosignatureSigner, cosign, sign_checkpoint
from ledger.log.tlogproof import TlogProof, make_proof
from tests.helpers import mutate

ORIGIN = "ledger.example.gov.cn/hangzhou-xihu-amr"
LOG = SigningKey.from_seed(b"\x01" * 32)
LOG_VKEY = note.Ed25519Signer(name=ORIGIN, key=LOG).verifier_key
W = [
    CosignatureSigner(name=f"w{i}.example.gov.cn", key=SigningKey.from_seed(bytes([0x50 + i]) * 32))
    for i in range(3)
]
W_KEYS = [w.verifier_key for w in W]


class Log:
    """A small in-memory log built with the stored-hash functions of ledger.log.merkle."""

    def __init__(self, n: int) -> None:
        self.entries = [f"entry {i}".encode() for i in range(n)]
        self.stored: list[bytes] = []
        for i, e in enumerate(self.entries):
            self.stored += merkle.stored_hashes(i, merkle.leaf_hash(e), self.read)

    def read(self, indexes: Sequence[int]) -> list[bytes]:
        return [self.stored[i] for i in indexes]

    def checkpoint(self, size: int | None = None, *, witnesses: int = 2, t: int = 1_717_171_200) -> bytes:
        size = len(self.entries) if size is None else size
        cp = Checkpoint(origin=ORIGIN, size=size, root_hash=merkle.tree_hash(size, self.read))
        data = sign_checkpoint(cp, key=LOG)
        for w in W[:witnesses]:
            data = cosign(data, w, timestamp=t)
        return data


LOG13 = Log(13)


def test_round_trip_and_verify_every_entry() -> None:
    signed = LOG13.checkpoint()
    for i, e in enumerate(LOG13.entries):
        p = make_proof(index=i, signed_checkpoint=signed, read=LOG13.read)
        data = p.to_bytes()
        assert data.startswith(b"c2sp.org/tlog-proof@v1\nindex %d\n" % i)
        assert data.endswith(b"\n\n" + signed)
        back = tlogproof.parse(data)
        assert back == p
        assert back.to_text() == data.decode()
        opened = tlogproof.verify(back, log_key=LOG_VKEY, leaf=e, witnesses=W_KEYS, quorum=2)
        assert opened.checkpoint.size == 13
        assert set(opened.cosignatures) == {W[0].name, W[1].name}
        tlogproof.verify(back, log_key=LOG_VKEY, leaf_hash=merkle.leaf_hash(e))


def test_extra_round_trip() -> None:
    p = make_proof(index=3, signed_checkpoint=LOG13.checkpoint(), read=LOG13.read, extra=b"\x00ctx\xff")
    data = p.to_bytes()
    assert b"\nextra " + base64.b64encode(b"\x00ctx\xff") + b"\nindex 3\n" in data
    assert tlogproof.parse(data).extra == b"\x00ctx\xff"
    with pytest.raises(MalformedError, match="non-empty"):
        TlogProof(index=0, proof=(), checkpoint=LOG13.checkpoint(), extra=b"")


def test_single_entry_tree_has_no_hash_lines() -> None:
    log = Log(1)
    p = make_proof(index=0, signed_checkpoint=log.checkpoint(), read=log.read)
    assert p.proof == ()
    assert p.to_bytes().startswith(b"c2sp.org/tlog-proof@v1\nindex 0\n\n")
    tlogproof.verify(tlogproof.parse(p.to_bytes()), log_key=LOG_VKEY, leaf=b"entry 0")


# c2sp.org/tlog-proof, "Format": the example, whose signature lines are elided ("[...]")
# in the spec; they are replaced here by real signatures over the same checkpoint text.
SPEC_HEAD = (
    "c2sp.org/tlog-proof@v1\n"
    "extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\n"
    "index 73894\n"
    "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n"
    "B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n"
    "EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\n"
    "RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\n"
    "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n"
    "\n"
)
SPEC_CHECKPOINT = "example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n"


def test_spec_example_layout() -> None:
    fancy = note.Ed25519Signer(name="example.com/fancylog", key=LOG)
    signed = note.sign(SPEC_CHECKPOINT, [fancy])
    data = SPEC_HEAD.encode() + signed
    p = tlogproof.parse(data)
    assert p.index == 73894
    assert len(p.proof) == 5
    assert p.extra is not None and p.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert p.checkpoint == signed
    assert p.to_bytes() == data
    # the signature verifies, but five hashes cannot prove entry 73894 of 109482
    with pytest.raises(ProofError, match=r"entry 73894 in example\.com/fancylog at size 109482"):
        tlogproof.verify(p, log_key=fancy.verifier_key, leaf=b"whatever")


def test_wrong_leaf_index_and_size_fail() -> None:
    signed = LOG13.checkpoint()
    p = make_proof(index=5, signed_checkpoint=signed, read=LOG13.read)
    with pytest.raises(ProofError, match="root hash mismatch"):
        tlogproof.verify(p, log_key=LOG_VKEY, leaf=b"entry 6")
    for other in (4, 6, 12):
        moved = TlogProof(index=other, proof=p.proof, checkpoint=signed)
        with pytest.raises(ProofError):
            tlogproof.verify(moved, log_key=LOG_VKEY, leaf=b"entry 5")
    past = TlogProof(index=13, proof=p.proof, checkpoint=signed)
    with pytest.raises(ProofError, match="entry 13 is not in the checkpointed tree of size 13"):
        tlogproof.verify(past, log_key=LOG_VKEY, leaf=b"entry 5")
    # the same hashes against a checkpoint of another size
    for size in (6, 12):
        other_cp = TlogProof(index=5, proof=p.proof, checkpoint=LOG13.checkpoint(size))
        with pytest.raises(ProofError):
            tlogproof.verify(other_cp, log_key=LOG_VKEY, leaf=b"entry 5")
    # one hash too many or too few
    for hashes in (p.proof[:-1], (*p.proof, p.proof[0])):
        with pytest.raises(ProofError, match="wrong number of hashes"):
            tlogproof.verify(
                TlogProof(index=5, proof=hashes, checkpoint=signed), log_key=LOG_VKEY, leaf=b"entry 5"
            )
    with pytest.raises(ProofError, match="not in the checkpointed tree"):
        make_proof(index=13, signed_checkpoint=signed, read=LOG13.read)


def test_quorum() -> None:
    p = make_proof(index=2, signed_checkpoint=LOG13.checkpoint(witnesses=1), read=LOG13.read)
    tlogproof.verify(p, log_key=LOG_VKEY, leaf=b"entry 2", witnesses=W_KEYS, quorum=1)
    with pytest.raises(SignatureError, match=r"cosigned by 1/2 required witnesses \(verified: w0"):
        tlogproof.verify(p, log_key=LOG_VKEY, leaf=b"entry 2", witnesses=W_KEYS, quorum=2)
    with pytest.raises(SignatureError, match="0/1 required witnesses"):
        tlogproof.verify(p, log_key=LOG_VKEY, leaf=b"entry 2", witnesses=W_KEYS[1:], quorum=1)
    with pytest.raises(MalformedError, match="quorum"):
        tlogproof.verify(p, log_key=LOG_VKEY, leaf=b"entry 2", quorum=-1)
    other_log = note.Ed25519Signer(name=ORIGIN, key=SigningKey.from_seed(b"\x03" * 32)).verifier_key
    with pytest.raises(SignatureError, match="no signature from a known key"):
        tlogproof.verify(p, log_key=other_log, leaf=b"entry 2")


def test_leaf_arguments() -> None:
    p = make_proof(index=2, signed_checkpoint=LOG13.checkpoint(), read=LOG13.read)
    with pytest.raises(MalformedError, match="exactly one of leaf and leaf_hash"):
        tlogproof.verify(p, log_key=LOG_VKEY)
    with pytest.raises(MalformedError, match="exactly one"):
        tlogproof.verify(p, log_key=LOG_VKEY, leaf=b"entry 2", leaf_hash=merkle.leaf_hash(b"entry 2"))
    with pytest.raises(MalformedError, match="32 bytes"):
        tlogproof.verify(p, log_key=LOG_VKEY, leaf_hash=b"short")


def _accepts(data: bytes, quorum: int = 2) -> bool:
    try:
        p = tlogproof.parse(data)
        tlogproof.verify(p, log_key=LOG_VKEY, leaf=b"entry 9", witnesses=W_KEYS, quorum=quorum)
    except LedgerError:
        return False
    return True


def test_every_bit_flip_and_every_truncation_is_rejected() -> None:
    data = make_proof(index=9, signed_checkpoint=LOG13.checkpoint(), read=LOG13.read).to_bytes()
    assert _accepts(data)
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            assert not _accepts(bytes(flipped)), f"flip of bit {bit} of byte {i} accepted"
    for n in range(len(data)):
        assert not _accepts(data[:n]), f"truncation to {n} bytes accepted"


def test_extension_with_garbage_is_rejected_but_unknown_signatures_are_ignored() -> None:
    data = make_proof(index=9, signed_checkpoint=LOG13.checkpoint(), read=LOG13.read).to_bytes()
    for tail in (b"x", b"\n", b"garbage\n", b"\xe2\x80\x94 \n"):
        assert not _accepts(data + tail)
    unknown = note.Signature(name="someone.example", key_id=b"abcd", data=b"sig").to_line().encode()
    assert _accepts(data + unknown)


SIGNED = LOG13.checkpoint(witnesses=0)
H = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("head", "message"),
    [
        ("", "does not start with the line"),
        ("c2sp.org/tlog-proof@v2\nindex 0\n\n", "does not start with the line"),
        ("C2SP.org/tlog-proof@v1\nindex 0\n\n", "does not start with the line"),
        ("c2sp.org/tlog-proof@v1 \nindex 0\n\n", "does not start with the line"),
        ("c2sp.org/tlog-proof@v1\r\nindex 0\n\n", "does not start with the line"),
        ("c2sp.org/tlog-proof@v1\n\n", "not 'index <n>'"),
        ("c2sp.org/tlog-proof@v1\nindex\n\n", "not 'index <n>'"),
        ("c2sp.org/tlog-proof@v1\nindex 01\n\n", "leading zero"),
        ("c2sp.org/tlog-proof@v1\nindex -1\n\n", "not an ASCII decimal"),
        ("c2sp.org/tlog-proof@v1\nindex  1\n\n", "not an ASCII decimal"),
        ("c2sp.org/tlog-proof@v1\nindex 1 \n\n", "not an ASCII decimal"),
        ("c2sp.org/tlog-proof@v1\nindex 9223372036854775808\n\n", "larger than 2\\^63-1"),
        ("c2sp.org/tlog-proof@v1\nINDEX 1\n\n", "not 'index <n>'"),
        ("c2sp.org/tlog-proof@v1\nindex 1\nextra AA==\n\n", "line 3 is not the base64 of a 32-byte hash"),
        ("c2sp.org/tlog-proof@v1\nextra \nindex 1\n\n", "extra line is empty"),
        ("c2sp.org/tlog-proof@v1\nextra AB==\nindex 1\n\n", "not canonical base64"),
        ("c2sp.org/tlog-proof@v1\nextra AA\nindex 1\n\n", "not valid base64"),
        ("c2sp.org/tlog-proof@v1\nextra\nindex 1\n\n", "not 'index <n>'"),
        ("c2sp.org/tlog-proof@v1\nextra AA==\nextra AA==\nindex 1\n\n", "not 'index <n>'"),
        (f"c2sp.org/tlog-proof@v1\nindex 1\n{H[:-1]}\n\n", "not the base64 of a 32-byte hash"),
        (f"c2sp.org/tlog-proof@v1\nindex 1\n{H}=\n\n", "not the base64 of a 32-byte hash"),
        (f"c2sp.org/tlog-proof@v1\nindex 1\n{H[:-2]}B=\n\n", "not canonical base64"),
        (f"c2sp.org/tlog-proof@v1\nindex 1\n {H[1:]}\n\n", "not valid base64"),
        (f"c2sp.org/tlog-proof@v1\nindex 1\n{base64.b64encode(bytes(31)).decode()}\n\n", "32-byte hash"),
        ("c2sp.org/tlog-proof@v1\nindex 1\n\u00e9\n\n", "not ASCII"),
    ],
)
def test_parse_rejects_head(head: str, message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        tlogproof.parse(head.encode() + SIGNED)


def test_parse_rejects_bad_checkpoints() -> None:
    for cut in (b"c2sp.org/tlog-proof@v1\nindex 1\n", b"c2sp.org/tlog-proof@v1\nindex 1", b""):
        with pytest.raises(MalformedError, match="before the checkpoint"):
            tlogproof.parse(cut)
    head = b"c2sp.org/tlog-proof@v1\nindex 1\n\n"
    with pytest.raises(MalformedError, match="no checkpoint after the empty line"):
        tlogproof.parse(head)
    with pytest.raises(MalformedError, match="proof checkpoint: note has no blank line"):
        tlogproof.parse(head + b"origin\n1\n" + H.encode() + b"\n")
    hello = note.sign("hello\n", [note.Ed25519Signer(name=ORIGIN, key=LOG)])
    with pytest.raises(MalformedError, match="proof checkpoint: checkpoint has 1 line"):
        tlogproof.parse(head + hello)
    with pytest.raises(MalformedError, match=r"proof checkpoint: .*not valid UTF-8"):
        tlogproof.parse(head + b"\xff" + SIGNED)
    # an extra empty line makes the checkpoint start with a blank line
    with pytest.raises(MalformedError, match="proof checkpoint: checkpoint line 1 is empty"):
        tlogproof.parse(head + b"\n" + SIGNED)


def test_caps() -> None:
    sixty_three = "".join(f"{H}\n" for _ in range(63))
    ok = f"c2sp.org/tlog-proof@v1\nindex 1\n{sixty_three}\n".encode() + SIGNED
    assert len(tlogproof.parse(ok).proof) == 63
    too_many = f"c2sp.org/tlog-proof@v1\nindex 1\n{sixty_three}{H}\n\n".encode() + SIGNED
    with pytest.raises(TooLargeError, match="more than 63 hashes"):
        tlogproof.parse(too_many)
    with pytest.raises(TooLargeError, match="more than 63 hashes"):
        TlogProof(index=0, proof=(bytes(32),) * 64, checkpoint=SIGNED)
    with pytest.raises(TooLargeError, match="more than the 100-byte limit"):
        tlogproof.parse(ok, max_size=100)
    huge_extra = (
        b"c2sp.org/tlog-proof@v1\nextra " + base64.b64encode(bytes(200_000)) + b"\nindex 1\n\n" + SIGNED
    )
    with pytest.raises(TooLargeError):
        tlogproof.parse(huge_extra)
    with pytest.raises(MalformedError, match="must be bytes"):
        tlogproof.parse("text")  # type: ignore[arg-type]


def test_constructor_validates() -> None:
    with pytest.raises(MalformedError, match="index"):
        TlogProof(index=-1, proof=(), checkpoint=SIGNED)
    with pytest.raises(MalformedError, match="32-byte hashes"):
        TlogProof(index=0, proof=(b"x",), checkpoint=SIGNED)
    with pytest.raises(MalformedError, match="32-byte hashes"):
        TlogProof(index=0, proof=[bytes(32)], checkpoint=SIGNED)  # type: ignore[arg-type]
    with pytest.raises(MalformedError, match="proof checkpoint"):
        TlogProof(index=0, proof=(), checkpoint=b"not a note")


# --- fuzzing ---------------------------------------------------------------------------

_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEED = make_proof(index=9, signed_checkpoint=LOG13.checkpoint(), read=LOG13.read, extra=b"ctx").to_bytes()


@_FUZZ
@given(st.binary(max_size=500))
def test_fuzz_random_bytes(data: bytes) -> None:
    with contextlib.suppress(LedgerError):
        tlogproof.parse(data)


@_FUZZ
@given(st.text(max_size=300))
def test_fuzz_random_text_after_header(text: str) -> None:
    data = b"c2sp.org/tlog-proof@v1\n" + text.encode("utf-8", "surrogatepass")
    try:
        p = tlogproof.parse(data)
    except LedgerError:
        return
    assert p.to_bytes() == data


@_FUZZ
@given(st.data())
def test_fuzz_mutated_valid_proofs(data: st.DataObject) -> None:
    msg = mutate(data, SEED)
    try:
        p = tlogproof.parse(msg)
    except LedgerError:
        return
    assert p.to_bytes() == msg  # whatever parses is canonical
    try:
        tlogproof.verify(p, log_key=LOG_VKEY, leaf=b"entry 9", witnesses=W_KEYS, quorum=2)
    except LedgerError:
        return
    assert p.index == 9  # only the unauthenticated extra data may have changed
