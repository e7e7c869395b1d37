"""``certledger demo``: a small, self-contained tour of one department's log.

It needs no network and no set-up: it makes a key and a log in a temporary directory
(or ``--dir``), appends a few hundred certificate statements in batches, signs two
checkpoints, produces and checks an inclusion proof (C2SP tlog-proof) and a
consistency proof, audits the log, and shows that a one-byte change in a copy of the
database is caught.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ledger import merkle, tlogproof
from ledger.audit import audit
from ledger.certid import CertId
from ledger.checkpoint import open_checkpoint
from ledger.errors import AuditError
from ledger.keys import SigningKey, VerifierKey
from ledger.statement import Entry, Kind, Reason, Statement
from ledger.store import LogStore

__all__ = ["demo"]

ORIGIN = "ledger.example.gov.cn/demo-amr"
ISSUER = "demo-amr"
ISSUER_CODE = "11330106MB1234567X"
TYPE_CODE = "11100000000013338W032"
_CLAIMS = ("name", "licence_no", "legal_rep", "address", "scope", "registered_capital")


def _cert_id(serial: int) -> str:
    return str(CertId(type_code=TYPE_CODE, issuer_code=ISSUER_CODE, serial=str(serial), version="001"))


def _issue(serial: int, now: int) -> Statement:
    """An issue statement with salted claim digests (the claims themselves stay with the holder)."""
    digests = {
        k: hashlib.sha256(secrets.token_bytes(16) + f"{name}=demo value {serial}".encode()).digest()
        for k, name in enumerate(_CLAIMS)
    }
    return Statement(
        kind=Kind.ISSUE,
        issuer=ISSUER,
        cert_id=_cert_id(serial),
        cert_type="business_licence",
        time=now,
        operator="op:demo01",
        valid_from=now,
        valid_until=now + 5 * 365 * 86400,
        claim_digests=digests,
    )


def _revoke(serial: int, now: int) -> Statement:
    return Statement(
        kind=Kind.REVOKE,
        issuer=ISSUER,
        cert_id=_cert_id(serial),
        cert_type="business_licence",
        time=now,
        operator="op:demo01",
        reason=Reason.OBTAINED_BY_FRAUD,
    )


@contextmanager
def _workdir(directory: Path | None) -> Iterator[Path]:
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="certledger-demo-") as tmp:
        yield Path(tmp)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo's key and log in this directory (default: a temporary one, removed at the end).",
)
@click.option(
    "--entries",
    default=300,
    show_default=True,
    type=click.IntRange(20, 100_000),
    help="How many statements to append.",
)
def demo(directory: Path | None, entries: int) -> None:
    """Run a small, offline tour of a department's log and explain each step."""
    say = click.echo
    with _workdir(directory) as work:
        db, key_file = work / "demo-log.db", work / "demo-log-key.pem"
        for p in (db, key_file):
            if p.exists():
                raise click.ClickException(f"{p} already exists; use an empty --dir")
        key = SigningKey.generate()
        key.save(key_file)
        vkey = VerifierKey(name=ORIGIN, public_key=key.public_key)
        say(f"1. Made an Ed25519 log key ({key_file.name}, mode 0600).")
        say(f"   Its verifier key, which the trust policy would list: {vkey}")

        now = int(time.time())
        store = LogStore.create(db, origin=ORIGIN)
        say(f"2. Created the log database {db.name} for origin {ORIGIN}.")
        with store:
            first = entries // 2
            statements = [_issue(serial, now) for serial in range(1, entries)]  # + one revocation
            t0 = time.perf_counter()
            for lo in range(0, first, 50):
                store.append(statements[lo : min(lo + 50, first)], key=key)
            cp1 = open_checkpoint(store.checkpoint(key), log_key=vkey).checkpoint
            revoked = 7
            rest = [*statements[first:-1], _revoke(revoked, now + 60), statements[-1]]
            for lo in range(0, len(rest), 50):
                store.append(rest[lo : lo + 50], key=key)
            elapsed = time.perf_counter() - t0
            note = store.checkpoint(key)
            cp2 = open_checkpoint(note, log_key=vkey).checkpoint
            say(
                f"3. Appended {store.size} signed, hash-chained statements in batches of 50 "
                f"({elapsed:.2f}s, each batch durable before it returned),"
            )
            say(f"   among them the revocation of certificate {revoked} at index {first + len(rest) - 2}.")
            say(f"4. Signed checkpoints at sizes {cp1.size} and {cp2.size}; the latest, a C2SP signed note:")
            for line in note.decode().splitlines():
                say(f"     {line}")

            index = 42
            proof = store.tlog_proof(index, size=cp1.size)
            entry = store.entry(index)
            tlogproof.verify(proof, log_key=vkey, leaf=entry)
            cert = Entry.from_bytes(entry).signed.statement.cert_id
            say(
                f"5. Inclusion proof: entry {index} (certificate {cert}) is in the tree of size {cp1.size}: "
                f"{len(proof.proof)} hashes, verified offline against the signed checkpoint."
            )
            consistency = store.consistency_proof(cp1.size, cp2.size)
            merkle.check_tree(consistency, cp2.size, cp2.root_hash, cp1.size, cp1.root_hash)
            say(
                f"6. Consistency proof: the tree of size {cp1.size} is a prefix of the tree of size "
                f"{cp2.size} ({len(consistency)} hashes): nothing signed earlier was rewritten."
            )
            report = audit(store, keys=[vkey])
        say("7. Audit: " + report.summary().replace("\n", "\n   "))

        copy = work / "tampered-copy.db"
        shutil.copyfile(db, copy)
        conn = sqlite3.connect(copy)
        (data,) = conn.execute("SELECT data FROM entries WHERE idx = ?", (index,)).fetchone()
        flipped = bytearray(data)
        flipped[-40] ^= 0x01
        conn.execute("UPDATE entries SET data = ? WHERE idx = ?", (bytes(flipped), index))
        conn.commit()
        conn.close()
        try:
            audit(copy, keys=[vkey])
        except AuditError as e:
            say(f"8. Changed one byte of entry {index} in a copy of the database; the audit caught it:")
            say(f"   {e}")
        else:  # pragma: no cover - the audit always catches this
            raise click.ClickException("the audit missed a tampered entry")
        os.unlink(copy)
        where = f"kept in {work}" if directory is not None else "in a temporary directory, now removed"
        say(f"Done. The key and the log were {where}.")
        if directory is not None:
            say(f"Try: certledger log audit {db} --key '{vkey}'")
