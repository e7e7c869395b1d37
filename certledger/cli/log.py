"""``certledger log …``: the operator's tools for one department's log database.

Key files are PKCS#8 PEM (mode 0600). If the environment variable
``CERTLEDGER_KEY_PASSPHRASE`` is set, keys are encrypted with it when generated and
decrypted with it when loaded. Public keys are given as C2SP verifier-key strings
(``origin+keyid+base64``), or as a file holding one per line (``KEYFILE.pub``, as
written by ``log init --generate-key``), or a PEM public-key file.
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.errors import AuditError, KeyFileError, MalformedError, ProofError, StorageError
from ledger.files import read_capped, write_file
from ledger.keys import SIG_TYPE_COSIGNATURE, SIG_TYPE_ED25519, PublicKey, SigningKey, VerifierKey
from ledger.log import merkle
from ledger.log.audit import audit as run_audit
from ledger.log.signer import LogSigner
from ledger.log.store import LogStore

__all__ = ["load_public_keys", "load_signing_key", "log"]

PASSPHRASE_ENV = "CERTLEDGER_KEY_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
_MAX_PUB_FILE = 64 * 1024
_DB = click.Path(dir_okay=False, path_type=Path)


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def load_signing_key(path: Path) -> SigningKey:
    """Load a private key file, decrypting with ``$CERTLEDGER_KEY_PASSPHRASE`` if set."""
    return SigningKey.load(path, passphrase=_passphrase())


def load_public_keys(values: tuple[str, ...], *, origin: str) -> list[PublicKey | VerifierKey]:
    """Public keys from verifier-key strings, files of them, or PEM public-key files."""
    out: list[PublicKey | VerifierKey] = []
    for value in values:
        path = Path(value)
        if not path.is_file():
            if "+" not in value:
                raise KeyFileError(f"{value}: no such file, and not a verifier key string (name+id+key)")
            out.append(VerifierKey.parse(value))
            continue
        data = read_capped(path, limit=_MAX_PUB_FILE, what="public key file")
        if b"PRIVATE KEY-----" in data:
            raise KeyFileError(
                f"{path} is a private key; give the public key (KEYFILE.pub or its verifier key string)"
            )
        if data.lstrip().startswith(b"-----BEGIN PUBLIC KEY-----"):
            try:
                pem = serialization.load_pem_public_key(data)
            except ValueError:
                raise KeyFileError(f"{path}: not a valid PEM public key") from None
            if not isinstance(pem, Ed25519PublicKey):
                raise KeyFileError(f"{path}: not an Ed25519 public key")
            raw = pem.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            try:
                out.append(VerifierKey(name=origin, public_key=PublicKey(raw=raw)))
            except MalformedError as e:
                raise KeyFileError(f"{path}: {e}") from None
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyFileError(f"{path}: not a text file of verifier keys") from None
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if not lines:
            raise KeyFileError(f"{path}: holds no verifier key")
        for n, line in enumerate(lines, start=1):
            try:
                out.append(VerifierKey.parse(line))
            except MalformedError as e:
                raise KeyFileError(f"{path}, key {n}: {e}") from None
    return out


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode("ascii")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def log() -> None:
    """Operate on a department's log database: create it, audit it, sign checkpoints,
    and produce inclusion and consistency proofs.

    DB is the SQLite file of one department's log. Only one process may write to a log
    at a time; audit, proof and consistency only read it and may run alongside the
    node that writes it.
    """


@log.command(short_help="Create a new, empty log database.")
@click.argument("db", type=_DB)
@click.option(
    "--origin",
    required=True,
    help="The log's origin: its C2SP identity, also the name of its key "
    "(e.g. ledger.example.gov.cn/hangzhou-xihu-amr). No spaces or '+'.",
)
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The log's private key file (PEM).",
)
@click.option(
    "--generate-key",
    is_flag=True,
    help="Create a new Ed25519 key at KEY (mode 0600) and its verifier key at KEY.pub.",
)
def init(db: Path, origin: str, key_file: Path, generate_key: bool) -> None:
    """Create a new, empty log database DB for ORIGIN.

    Prints the log's verifier key (origin+keyid+base64), which auditors and the trust
    policy need. Refuses to overwrite an existing database or key file.
    """
    if db.exists():
        raise StorageError(f"{db}: file exists; refusing to overwrite it with a new log")
    pub_file = key_file.with_name(key_file.name + ".pub")
    if generate_key:
        for p in (key_file, pub_file):
            if p.exists():
                raise KeyFileError(f"{p}: file exists; refusing to overwrite a key")
        key = SigningKey.generate()
    else:
        key = load_signing_key(key_file)
    vkey = VerifierKey(name=origin, public_key=key.public_key, sig_type=SIG_TYPE_ED25519)
    LogStore.create(db, origin=origin).close()
    if generate_key:
        key.save(key_file, passphrase=_passphrase())
        write_file(pub_file, f"{vkey}\n".encode(), mode=0o644, what="verifier key file")
        click.echo(f"wrote the new log key to {key_file} (mode 0600) and {pub_file}")
    click.echo(f"created log {db} for origin {origin}")
    click.echo(f"log verifier key: {vkey}")


@log.command(short_help="Check everything the log holds; exit 1 at the first fault.")
@click.argument("db", type=_DB)
@click.option(
    "--key",
    "keys",
    multiple=True,
    required=True,
    metavar="PUB",
    help="A log public key: a verifier-key string, a file of them (e.g. KEY.pub), or a PEM "
    "public key. Repeat for logs whose key was rotated.",
)
@click.option(
    "--witness",
    "witnesses",
    multiple=True,
    metavar="VKEY",
    help="A witness verifier key (signature type 0x04) whose cosignatures kept with the "
    "checkpoints must verify. Repeat for each witness.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar (default: when stderr is a terminal).",
)
def audit(db: Path, keys: tuple[str, ...], witnesses: tuple[str, ...], progress: bool | None) -> None:
    """Recompute and check everything the log DB holds.

    Checks that entries are contiguous and parse strictly, the hash chain, every
    statement signature (by one of the given keys), every stored Merkle hash, every
    stored checkpoint (its signature and its root against the entries), and every
    cosigned checkpoint note (its text, the log's signature, and the cosignatures of
    the --witness keys). Reads one snapshot, so it may run while the node appends.
    Exits 0 if everything holds; otherwise prints the first bad entry index and what
    is wrong, and exits 1.
    """
    from tqdm import tqdm  # noqa: PLC0415 - only the audit needs it

    with LogStore.open(db, readonly=True) as store:
        public_keys = load_public_keys(keys, origin=store.origin)
        witness_keys = [VerifierKey.parse(w) for w in witnesses]
        for w in witness_keys:
            if w.sig_type != SIG_TYPE_COSIGNATURE:
                raise MalformedError(
                    f"--witness {w.name}: signature type 0x{w.sig_type:02x} is not a witness key"
                )
        with tqdm(
            total=store.size,
            unit=" entries",
            unit_scale=True,
            disable=None if progress is None else not progress,
            file=sys.stderr,
            desc="audit",
            leave=False,
        ) as bar:
            try:
                report = run_audit(
                    store,
                    keys=public_keys,
                    witnesses=witness_keys,
                    progress=lambda done, _: bar.update(done - bar.n),
                )
            except AuditError as e:
                bar.close()
                where = f"first bad entry: {e.index}" if e.index is not None else "not tied to one entry"
                click.echo(f"audit FAILED ({where}): {e}", err=True)
                sys.exit(1)
    click.echo(report.summary())


@log.command(short_help="Print the latest checkpoint, or sign a new one.")
@click.argument("db", type=_DB)
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Sign a new checkpoint of the current tree with this private key file. "
    "Without it, print the latest stored checkpoint.",
)
def checkpoint(db: Path, key_file: Path | None) -> None:
    """Print the latest signed checkpoint of DB (with the witness cosignatures kept for
    it), or sign a new one with --key.

    The key remembers the last checkpoint it signed in KEYFILE.last-checkpoint (written
    before the new checkpoint is printed). Signing is refused if the log was rewritten,
    truncated or restored from a backup since: neither the database's own checkpoints
    nor the key's memory may be contradicted.
    """
    if key_file is None:
        with LogStore.open(db, readonly=True) as store:
            latest = store.latest_checkpoint()
        if latest is None:
            raise StorageError(f"{db}: no checkpoint has been signed yet; sign one with --key KEYFILE")
        click.echo(latest.full_note.decode("utf-8"), nl=False)
        return
    signer = LogSigner.beside(key_file, key=load_signing_key(key_file))
    with LogStore.open(db) as store:
        note = store.checkpoint(signer)
    click.echo(note.decode("utf-8"), nl=False)


@log.command(short_help="Print a C2SP tlog-proof of one entry.")
@click.argument("db", type=_DB)
@click.option("--index", required=True, type=click.IntRange(min=0), help="The entry to prove.")
@click.option(
    "--size",
    type=click.IntRange(min=1),
    help="Prove against the stored checkpoint of this tree size (default: the latest checkpoint).",
)
def proof(db: Path, index: int, size: int | None) -> None:
    """Print a C2SP tlog-proof that entry INDEX is in the log DB.

    The proof carries the signed checkpoint it is proved against, with the witness
    cosignatures kept for it, so anyone holding the trust policy (or just the log's
    public key) can check it offline.
    """
    with LogStore.open(db, readonly=True) as store:
        tlog_proof = store.tlog_proof(index, size=size)
    click.echo(tlog_proof.to_text(), nl=False)


@log.command(short_help="Print a consistency proof between two tree sizes.")
@click.argument("db", type=_DB)
@click.option("--old", required=True, type=click.IntRange(min=1), help="The older tree size.")
@click.option(
    "--new",
    type=click.IntRange(min=1),
    help="The newer tree size (default: the latest signed checkpoint's size, or the log's size "
    "if none was signed).",
)
def consistency(db: Path, old: int, new: int | None) -> None:
    """Print an RFC 9162 consistency proof from tree size --old to --new.

    The output states the origin, both sizes and both root hashes, then the proof's
    hashes, one base64 line each (deepest first, as RFC 9162 orders them).
    """
    with LogStore.open(db, readonly=True) as store:
        if new is None:
            latest = store.latest_checkpoint()
            new = latest.size if latest is not None and latest.size > 0 else store.size
        hashes = store.consistency_proof(old, new)
        old_root, new_root = store.root(old), store.root(new)
        origin = store.origin
    try:  # never print a proof that does not check
        merkle.check_tree(hashes, new, new_root, old, old_root)
    except ProofError as e:
        raise StorageError(
            f"{db}: the stored hashes are inconsistent ({e}); run 'certledger log audit'"
        ) from None
    lines = [
        f"origin {origin}",
        f"old size {old}",
        f"old root {_b64(old_root)}",
        f"new size {new}",
        f"new root {_b64(new_root)}",
        *(_b64(h) for h in hashes),
    ]
    click.echo("\n".join(lines))


@log.command(short_help="Print the log's origin, size, root and latest checkpoint.")
@click.argument("db", type=_DB)
def info(db: Path) -> None:
    """Print the origin, size, root hash and latest checkpoint of the log DB."""
    with LogStore.open(db, readonly=True) as store:
        size = store.size
        root = store.root(size)
        latest = store.latest_checkpoint()
        origin = store.origin
    click.echo(f"origin {origin}")
    click.echo(f"size {size}")
    click.echo(f"root {_b64(root)}")
    click.echo(f"latest checkpoint {'none' if latest is None else f'at size {latest.size}'}")
    click.echo(f"database {db} ({db.stat().st_size} bytes)")
