"""``certledger demo``: the whole system, offline, in one run, explained step by step.

1. A consortium of three Hangzhou departments agrees on a trust policy: version 1 from
   the spec shipped in ``certledger/data/demo-consortium.toml``, built by the code
   ``certledger consortium init`` runs (keys generated and saved the same way), signed
   by a threshold of governance keys and pinned; version 2 adds a certificate type
   (``certledger/data/demo-food-permit.toml``), is signed by both thresholds and walked to.
2. Each department opens its own log, keyed by its log key in the policy and signed
   through a :class:`~ledger.log.signer.LogSigner` (which remembers the last checkpoint
   it signed, beside the key file); every checkpoint is cosigned by the other two
   departments' witnesses, the cosignatures are kept with it
   (:meth:`~ledger.log.store.LogStore.add_cosignatures`), and the log is published as
   a static copy of its tlog-tiles files under ``public/`` (the layout a node serves).
3. The market regulator issues the reference business licence
   (``certledger/data/business_licence.json``: the project's reference licence, with its
   id's check character corrected), logs it and has the checkpoint witnessed.
4. The holder makes a full and a selective ``CL1:`` presentation, writes them as PNG
   and SVG QR codes and reads the PNG back.
5. Public security's verifier (:class:`~verifier.verifier.Verifier`) syncs its replica
   from the static copy and checks the selective code: VALID. Its clock then moves on
   past the policy's freshness limit with nothing synced: STALE. The witnesses cosign
   the unchanged checkpoint again, the replica syncs: VALID.
6. Attacks, each refused with the project's own error or the verdict a verifier gives.
7. The regulator revokes the licence; the replica syncs: REVOKED. Every log is audited.

The story starts :data:`LATER` seconds in the past, so that the verifier's clock can
move on to the present; everything kept with ``--dir`` is then current. The witnesses
run in this process: each department's :class:`node.witness.Witness` (its database under
``witnesses/``) answers C2SP tlog-witness ``add-checkpoint`` requests as a node would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import shlex
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import click

from certledger.cli.consortium import key_file
from certledger.cli.demo_network import STATE_FILE, Network, sigterm_as_interrupt
from certledger.cli.story import Out as _Out
from ledger.credential.claims import canonical_value, claim_digest, claim_salt
from ledger.credential.credential import issue_credential
from ledger.credential.presentation import Presentation
from ledger.credential.qr import make_qr, read_qr_file, render_png, render_svg
from ledger.errors import (
    AuditError,
    ConflictError,
    LedgerError,
    PolicyError,
    StorageError,
)
from ledger.files import write_file
from ledger.keys import PublicKey, SigningKey, VerifierKey
from ledger.log import tlogproof
from ledger.log.audit import audit
from ledger.log.certid import CertId
from ledger.log.checkpoint import open_checkpoint
from ledger.log.signer import LogSigner
from ledger.log.statement import Entry, Kind, Reason, SignedStatement, Statement, encode_entry
from ledger.log.store import LogStore
from ledger.log.witness import encode_add_checkpoint
from ledger.replica.fetch import DirectoryFetcher, mirror_prefix
from ledger.replica.store import ReplicaStore
from ledger.trust.consortium import KeyRequest, apply_changes, genesis, parse_change, read_toml
from ledger.trust.policy import Member, Policy, format_time, mandates
from ledger.trust.policy_doc import add_signature, parse_document, sign_proposal
from ledger.trust.trust import TrustedPolicy, signed_by
from node.static import TilesDir
from node.witness import Answer, Witness
from verifier.verdict import Code, Verdict
from verifier.verifier import Verifier, node_sources

__all__ = ["demo"]

AMR, PSB, HEALTH = "hangzhou-xihu-amr", "hangzhou-psb", "hangzhou-health"
LICENCE = "business_licence"
#: Statements already in each log before the demo's own, so that proofs have some depth.
EARLIER = {AMR: 255, HEALTH: 40, PSB: 0}
#: The selective presentation's claims, and the purpose public security checks them for.
REVEAL = ("name", "uscc")
PURPOSE = "identity"
OPERATOR = "op:7f3a9c"
#: How long before the present the story starts: the verifier's clock moves on by this
#: much in step 5, past the policy's freshness limit (a day in the shipped spec).
LATER = 25 * 3600
_CHINA = dt.timezone(dt.timedelta(hours=8))


def _data(name: str) -> bytes:
    """A file shipped in ``certledger/data``."""
    return resources.files("certledger").joinpath("data", name).read_bytes()


def _midnight(day: str) -> int:
    """Unix seconds of 00:00 China time on ``day`` (YYYY-MM-DD)."""
    return int(dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), _CHINA).timestamp())


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _copy_database(src: Path, dst: Path) -> None:
    """A consistent copy of a log database (SQLite's online backup; the writer may be open)."""
    try:
        dst.unlink(missing_ok=True)
        with (
            contextlib.closing(sqlite3.connect(f"{src.absolute().as_uri()}?mode=ro", uri=True)) as a,
            contextlib.closing(sqlite3.connect(dst)) as b,
        ):
            a.backup(b)
    except (OSError, sqlite3.Error) as e:
        raise StorageError(f"cannot copy {src} to {dst}: {e}") from None


def _replace_entry(db: Path, index: int, entry: bytes) -> None:
    """Overwrite entry ``index`` of the log database ``db`` behind the store's back."""
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("UPDATE entries SET data = ? WHERE idx = ?", (entry, index))
            conn.commit()
    except sqlite3.Error as e:
        raise StorageError(f"{db}: {e}") from None


class _Demo:
    """The demo's state: one consortium, its logs, witnesses, verifier and files under ``work``."""

    def __init__(self, work: Path, say: _Out) -> None:
        self.work = work
        self.say = say
        self.now = int(time.time()) - LATER  # the clock of the story; step 5 moves it on
        self.keys: dict[tuple[str, str], SigningKey] = {}  # (member id or key name, role) -> key
        self.key_files: dict[tuple[str, str], Path] = {}
        self.signers: dict[str, LogSigner] = {}
        self.stores: dict[str, LogStore] = {}
        self.static: dict[str, TilesDir] = {}  # member id -> its static copy
        self.witnesses: dict[str, Witness] = {}
        self.texts: dict[str, str] = {}  # "full" / "identity" -> CL1 text
        self.caught: set[str] = set()  # the attacks refused, by letter
        self.verdicts: list[tuple[str, Verdict]] = []  # what the verifier answered, in order
        self.cosigned = 0  # witnesses that cosigned the licence's checkpoint
        self.audits = 0  # logs audited in step 7
        self.replica: ReplicaStore | None = None
        self._verifier: Verifier | None = None

    # -- shared steps ----------------------------------------------------------------

    @property
    def policy(self) -> Policy:
        """The trusted policy version (the newest, once step 1 has walked to it)."""
        return self.trusted.current(now=self.now)

    def member(self, member_id: str) -> Member:
        return self.policy.require_member(member_id)

    def log_key(self, member_id: str) -> VerifierKey:
        """The member's current log key as the policy lists it."""
        m = self.member(member_id)
        return m.log_verifier_key(m.log_keys[-1])

    def public(self, member_id: str) -> Path:
        """Where the member's log is published: ``public/mirror/<origin hash>/``."""
        return self.work / "public" / mirror_prefix(self.member(member_id).origin)

    def witness(self, member_id: str, note: bytes | None = None) -> bytes:
        """Have every other member's witness cosign ``note`` (default: a new checkpoint
        signed now), keep the cosignatures with the checkpoint, publish, and return the
        cosigned note."""
        store = self.stores[member_id]
        if note is None:
            note = store.checkpoint(self.signers[member_id])
        witnesses = self.policy.witness_keys(member_id)
        lines = b""
        for wid in witnesses:
            answer = self.submit(wid, store, note)
            if answer.status != 200:
                raise click.ClickException(f"witness {wid} refused {member_id}'s checkpoint: {answer.body!r}")
            lines += answer.body
        kept = store.add_cosignatures(note + lines, witnesses=list(witnesses.values()))
        self.publish(member_id, kept)
        return kept

    def submit(self, witness_id: str, store: LogStore, note: bytes) -> Answer:
        """A tlog-witness ``add-checkpoint`` request for ``note`` to ``witness_id``'s witness,
        with a consistency proof from the size it last cosigned, read from ``store``."""
        witness = self.witnesses[witness_id]
        size = open_checkpoint(note, log_key=self.log_key(self._member_of(store))).checkpoint.size
        latest = witness.latest(store.origin)
        old = 0 if latest is None else min(latest[0], size)
        proof = store.consistency_proof(old, size) if 0 < old < size else []
        return witness.add_checkpoint(encode_add_checkpoint(old_size=old, proof=proof, note=note))

    def _member_of(self, store: LogStore) -> str:
        member = self.policy.member_by_origin(store.origin)
        if member is None:
            raise click.ClickException(f"no member has the log {store.origin}")
        return member.id

    def publish(self, member_id: str, note: bytes) -> None:
        """Write the tiles the log grew by, then the checkpoint (what ``node run --tiles-dir`` does)."""
        size = open_checkpoint(note, log_key=self.log_key(member_id)).checkpoint.size
        copy = self.static.setdefault(member_id, TilesDir(self.public(member_id)))
        copy.write_tiles(self.stores[member_id], size)
        copy.write_checkpoint(note)

    def quorum(self, member_id: str, note: bytes) -> list[str]:
        """The members whose cosignatures on ``note`` verify; PolicyError below the quorum."""
        witnesses = self.policy.witness_keys(member_id)
        opened = open_checkpoint(
            note, log_key=self.log_key(member_id), witnesses=list(witnesses.values()), now=self.now
        )
        by_name = {k.name: mid for mid, k in witnesses.items()}
        ids = [by_name[name] for name in opened.cosignatures]
        self.policy.check_quorum(member_id, ids)
        return ids

    def refused(
        self,
        attack: str,
        what: str,
        errors: type[LedgerError] | tuple[type[LedgerError], ...],
        action: Callable[[], object],
    ) -> None:
        """Run ``action``, which must fail with one of ``errors``, and show the error."""
        try:
            action()
        except errors as e:
            self.say(f"→ refused, {type(e).__name__}: {e}", 6)
            self.caught.add(attack)
            return
        raise click.ClickException(f"the demo expected {what} to be refused, but it was accepted")

    @property
    def verifier(self) -> Verifier:
        """Public security's verifier: the policy, its replica (``verifier/replica.db``) and
        the static copy to sync from; its clock is the story's. It syncs an issuer's log on
        demand before every NOT_IN_LEDGER (no minimum interval: the story's clock stands still)."""
        if self._verifier is None:
            (self.work / "verifier").mkdir()
            self.replica = ReplicaStore.open(self.work / "verifier" / "replica.db")
            self._verifier = Verifier(
                policy=self.policy,
                store=self.replica,
                sources=node_sources([str(self.work / "public")]),
                clock=lambda: self.now,
                min_interval=0.0,
            )
        return self._verifier

    def check(
        self, what: str, text: str, expected: Code, *, indent: int = 6, purpose: str | None = None
    ) -> Verdict:
        """Verify ``text`` at public security's verifier and show the verdict, which must be
        ``expected`` (the demo fails otherwise)."""
        v = self.verifier.verify(text, purpose=purpose)
        mark = {"valid": "✓", "invalid": "✗", "unsure": "?"}[v.verdict_class]
        self.say(f"→ {mark} {v.code.value}  {v.reason_zh}", indent, hang=4)
        self.say(v.reason_en, indent + 4)
        for warning in v.warnings:
            shown = warning
            for m in self.policy.members:  # name the static copy, not its long path
                shown = shown.replace(f"directory {self.public(m.id)}", "the static copy public/")
            self.say(f"note: {shown}", indent + 4)
        if v.code != expected:
            raise click.ClickException(
                f"the demo expected {what} to be {expected.value}, but the verifier answered {v.code.value}: "
                f"{v.reason_en}"
            )
        self.verdicts.append((what, v))
        return v

    def sync(self) -> str:
        """Sync the verifier's replica of every member's log; a line saying what it holds."""
        held = []
        for r in self.verifier.sync():
            if not r.ok or r.checkpoint is None:
                raise click.ClickException(
                    f"the replica of {r.member_id} did not sync: {'; '.join(r.refused)}"
                )
            held.append(f"{r.member_id} {r.size}")
        return ", ".join(held)

    # -- 1. the trust policy ---------------------------------------------------------

    def consortium(self) -> None:
        say, work = self.say, self.work
        say.step(1, "A consortium of three departments agrees on a trust policy")
        spec = _data("demo-consortium.toml")
        write_file(work / "consortium-spec.toml", spec, mode=0o644, what="spec")
        made: list[tuple[KeyRequest, SigningKey]] = []

        def make_key(request: KeyRequest) -> PublicKey:
            key = SigningKey.generate()
            made.append((request, key))
            return key.public_key

        # what `certledger consortium init consortium-spec.toml --out DIR` does
        v1 = genesis(read_toml(spec, what="consortium-spec.toml"), now=self.now, make_key=make_key)
        keys_dir = work / "keys"
        keys_dir.mkdir(mode=0o700)
        for request, key in made:
            path = key_file(keys_dir, request)
            key.save(path)
            self.keys[(request.member or request.name, request.role)] = key
            self.key_files[(request.member or request.name, request.role)] = path
        governance = [(r.name, k) for r, k in made if r.role == "governance"]
        say("the spec consortium-spec.toml, shipped with certledger, names:")
        for m in v1.members:
            say(f"member {m.id:<18} {m.name}", 5)
        for t in v1.types:
            issuers = ", ".join(t.members_with("issue"))
            say(f"type   {t.code:<18} {t.name}, {len(t.claims)} claims, issued by {issuers}", 5)
        say(
            f"generated {len(governance)} governance keys, and a log key and a witness key per department "
            "(keys/, mode 0600)"
        )
        # the third governance key holder is away: a threshold of signatures suffices
        v1_doc = sign_proposal(v1, governance[: v1.governance_threshold])
        write_file(work / "policy-v1.note", v1_doc, mode=0o644, what="policy document")
        self.v1_doc = v1_doc
        self.trusted = TrustedPolicy(v1_doc)  # checks version 1's own threshold, then pins it
        own = signed_by(parse_document(v1_doc), v1.governance_keys)
        say(
            f"version 1 (policy-v1.note) signed by {len(own)} of its {len(v1.governance_keys)} governance "
            f"keys ({', '.join(k.name for k in own)}); threshold {v1.governance_threshold}: verified and "
            f"pinned; expires {format_time(v1.expires)}"
        )
        permit = _data("demo-food-permit.toml")
        write_file(work / "food-permit-type.toml", permit, mode=0o644, what="certificate type")
        change = parse_change("add-type=food-permit-type.toml")
        v2 = apply_changes(v1, [change], now=self.now, read_file=lambda _: permit)
        # `consortium propose`, then `consortium sign` by two holders
        (first, first_key), (second, second_key) = governance[1:3]
        v2_doc = add_signature(sign_proposal(v2, [(first, first_key)]), second, second_key)
        write_file(work / "policy-v2.note", v2_doc, mode=0o644, what="policy document")
        self.trusted.update(v2_doc, now=self.now)
        doc = parse_document(v2_doc)
        old, new = signed_by(doc, v1.governance_keys), signed_by(doc, v2.governance_keys)
        added = v2.types[-1]
        say(
            f"version 2 (policy-v2.note, {change}) adds the type {added.code} {added.name}; "
            f"signed by {first} and {second}: {len(old)} of version 1's keys and {len(new)} of its own, "
            f"threshold {v1.governance_threshold} each; walked to from the pinned version 1"
        )

    # -- 2. the logs -----------------------------------------------------------------

    def logs(self) -> None:
        say, work = self.say, self.work
        say.step(2, "Each department opens its log, keyed by its log key in the policy")
        (work / "logs").mkdir()
        (work / "witnesses").mkdir()
        policy = self.policy
        for m in policy.members:
            self.witnesses[m.id] = Witness(
                path=work / "witnesses" / f"{m.id}.db",
                member_id=m.id,
                key=self.keys[(m.id, "witness")],
                policy=lambda: self.policy,
                clock=lambda: self.now,
            )
        say(
            f"a checkpoint counts once {policy.witness_quorum} other departments' witnesses cosign it; each "
            "witness (witnesses/MEMBER.db, the node's tlog-witness code) first checks that it extends what "
            "it cosigned before. Each log (logs/MEMBER.db) keeps "
            "its cosignatures, its key remembers the last checkpoint it signed (keys/MEMBER-log.pem"
            ".last-checkpoint), and it is published as tlog-tiles files (public/mirror/ORIGIN-HASH/)"
        )
        for m in policy.members:
            key = self.keys[(m.id, "log")]
            if m.log_keys[-1].public_key != key.public_key:
                raise click.ClickException(f"the policy does not list {m.id}'s log key")
            self.signers[m.id] = LogSigner.beside(self.key_files[(m.id, "log")], key=key)
            store = LogStore.create(work / "logs" / f"{m.id}.db", origin=m.origin)
            self.stores[m.id] = store
            earlier = [self._earlier(m, i) for i in range(EARLIER[m.id])]
            store.append(earlier, key=key)
            ids = self.quorum(m.id, self.witness(m.id))
            what = f"{len(earlier)} earlier statements" if earlier else "no statements (issues none yet)"
            say(
                f"{m.id:<18} key {self.log_key(m.id).key_id.hex()}  {what}; checkpoint {store.size} "
                f"cosigned by {', '.join(ids)}"
            )
        say("(the earlier statements stand in for each register's history; their claim digests are random)")

    def _earlier(self, m: Member, i: int) -> Statement:
        ctype = next(t for t in self.policy.types if m.id in t.members_with("issue"))
        serial = str(2_430_000 + i)
        cid = CertId(type_code=ctype.national_code, issuer_code=m.issuer_code, serial=serial, version="001")
        return Statement(
            kind=Kind.ISSUE,
            issuer=m.id,
            cert_id=str(cid),
            cert_type=ctype.code,
            time=self.now,
            operator="op:import",
            valid_from=self.now,
            claim_digests={c.key: hashlib.sha256(f"{cid} {c.key}".encode()).digest() for c in ctype.claims},
        )

    # -- 3. issuing ------------------------------------------------------------------
    # -- 3. issuing ------------------------------------------------------------------

    def issue(self) -> None:
        say, work = self.say, self.work
        amr = self.member(AMR)
        say.step(3, f"The market regulator ({amr.name}) issues the reference business licence")
        licence = json.loads(_data("business_licence.json"))
        cid = CertId.parse(licence["licence_id"])  # checks the check character
        ctype = self.policy.require_type(LICENCE)
        if (cid.type_code, cid.issuer_code, licence["issuer"]) != (ctype.national_code, amr.issuer_code, AMR):
            raise click.ClickException("the shipped licence does not belong to the demo's regulator")
        self.licence = licence
        key = self.keys[(AMR, "log")]
        self.credential = cred = issue_credential(
            cert_type=ctype,
            issuer=amr,
            key=key,
            serial=cid.serial,
            cert_version=cid.version,
            claims=licence["claims"],
            operator=OPERATOR,
            time=self.now,
            valid_from=_midnight(licence["valid_from"]),
            valid_until=None if licence["valid_until"] is None else _midnight(licence["valid_until"]),
        )
        if cred.cert_id != licence["licence_id"]:
            raise click.ClickException(f"issued {cred.cert_id}, not {licence['licence_id']}")
        cred.save(work / "licence.credential.json")
        say(f"{cred.claims['name']} (统一社会信用代码 {cred.claims['uscc']}), certificate id")
        say(cred.cert_id, 5)
        say(
            f"the holder gets licence.credential.json ({len(cred.schema)} claims and their salt secret, "
            f"mode 0600); the log gets only the signed statement, with "
            f"{len(cred.statement.claim_digests or {})} salted claim digests"
        )
        store = self.stores[AMR]
        [self.index] = store.append(cred.signed, key=key)
        witnessed = self.witness(AMR)
        say(
            f"appended at index {self.index}; checkpoint {store.size} signed; each witness checked a "
            f"consistency proof from size {self.index}, which it had cosigned, and cosigned. The witnessed "
            "checkpoint (C2SP signed note, tlog-checkpoint, tlog-cosignature):"
        )
        for line in witnessed.decode().splitlines():
            say(line, 5, wrap=False)
        ids = self.quorum(AMR, witnessed)
        self.cosigned = len(ids)
        say(
            f"witness quorum of policy version {self.trusted.version} met: "
            f"{len(ids)}/{self.policy.witness_quorum} ({', '.join(ids)})"
        )
        self.prove(self.index, work / "licence.tlog-proof")

    # -- 4. presenting ---------------------------------------------------------------

    def present(self) -> None:
        say, work, cred = self.say, self.work, self.credential
        say.step(4, "The holder presents the licence as a QR code")
        for label, reveal in (("full", None), ("identity", REVEAL)):
            p = cred.present(reveal)
            text = p.to_text()
            qr = make_qr(text)
            mode = 0o600 if p.full else 0o644  # a full disclosure can rebuild the credential
            for kind, render in (("png", render_png), ("svg", render_svg)):
                write_file(work / f"licence-{label}.{kind}", render(text), mode=mode, what=kind.upper())
            what = f"full disclosure, all {len(cred.schema)} claims" if p.full else "selective, name and uscc"
            say(
                f"{what}: {len(text)} characters, QR version {qr.version} (level Q) → "
                f"licence-{label}.png, .svg"
            )
            self.texts[label] = text
        if len(self.texts["identity"]) > len(self.texts["full"]):
            say(
                f"the selective one is longer: it carries a salt per disclosed claim and the digests of the "
                f"{len(cred.schema) - len(REVEAL)} hidden claims, which the signature covers; a full one "
                "rebuilds every digest from the salt secret"
            )
        decoded = read_qr_file(work / "licence-identity.png")
        if decoded != [self.texts["identity"]]:
            raise click.ClickException("the QR decoder did not read back the text that was encoded")
        self.scanned = decoded[0]
        say(
            "read licence-identity.png back with the QR decoder (zxing-cpp): the same text, "
            f"{self.scanned[:28]}…"
        )

    # -- 5. verifying ----------------------------------------------------------------
    def prove(self, index: int, out: Path) -> None:
        """Write the tlog-proof of the regulator's entry ``index`` under its newest cosigned
        checkpoint to ``out``, read it back and verify it."""
        store, policy = self.stores[AMR], self.policy
        write_file(out, store.tlog_proof(index).to_bytes(), mode=0o644, overwrite=True, what="proof")
        proof = tlogproof.parse(out.read_bytes())
        opened = tlogproof.verify(
            proof,
            log_key=self.log_key(AMR),
            leaf=store.entry(index),
            witnesses=list(policy.witness_keys(AMR).values()),
            quorum=policy.witness_quorum,
            now=self.now,
        )
        policy.check_fresh(max(opened.cosignatures.values()), now=self.now)
        self.say(
            f"✓ {out.name} (c2sp.org/tlog-proof, {_count(len(proof.proof), 'hash', 'hashes')}): "
            f"entry {index} is in the tree of size {opened.checkpoint.size}, checked against the checkpoint "
            "cosigned by "
            f"{len(opened.cosignatures)}/{policy.witness_quorum} witnesses"
        )

    # -- 5. verifying ----------------------------------------------------------------

    def verify(self) -> None:
        say, policy = self.say, self.policy
        psb = self.member(PSB)
        say.step(5, f"Public security ({psb.name}) checks the selective QR at its verifier")
        if policy.freshness_seconds >= LATER:
            raise click.ClickException("the demo's clock step must exceed the policy's freshness limit")
        held = self.sync()
        say(
            f"its verifier holds only policy version {policy.version} (walked to from its pin) and a replica "
            f"(verifier/replica.db) it synced from the static copy public/, never from the issuer: {held} "
            "entries, every checkpoint, tile and signature checked. The verdict:"
        )
        v = self.check("the selective licence", self.scanned, Code.VALID, indent=3, purpose=PURPOSE)
        for c in v.claims:
            say(f"{c.label} {c.name}: {c.value}", 7)
        say(f"(not disclosed: {', '.join(v.hidden)})", 7)
        if v.evidence is not None:
            e = v.evidence
            say(
                f"evidence: entry {e.entry_index} under checkpoint {e.checkpoint_size}, witnessed by "
                f"{', '.join(e.cosigners)} at {format_time(e.witnessed_at)}",
                7,
            )
        later = self.now + LATER
        say(
            f"{LATER // 3600} hours later ({format_time(later)}) the regulator's static copy has not changed "
            f"and nothing was synced; the policy allows {policy.freshness_seconds // 3600} hours:"
        )
        self.now = later
        self.check("the licence with an old replica", self.scanned, Code.STALE, indent=3, purpose=PURPOSE)
        note = self.stores[AMR].latest_checkpoint()
        if note is None:
            raise click.ClickException("the regulator's published checkpoint is not in its log")
        self.witness(AMR, note.note)
        self.sync()
        say(
            "the witnesses cosign the regulator's unchanged checkpoint again (now), the static copy is "
            "updated and the replica syncs:"
        )
        self.check("the licence after a sync", self.scanned, Code.VALID, indent=3, purpose=PURPOSE)

    # -- 6. attacks ------------------------------------------------------------------

    def attacks(self) -> None:
        say, policy = self.say, self.policy
        say.step(6, "Attacks, each refused or answered with the verdict that says what is wrong")
        (self.work / "attacks").mkdir()
        licence = policy.require_type(LICENCE)
        # a) a changed claim value
        p = Presentation.from_text(self.scanned)
        forged_name = "杭州云栖数字科技集团有限公司"
        values = {**p.values, licence.claim("name").key: forged_name}
        forged = dataclasses.replace(p, values=values).to_text()
        write_file(self.work / "attacks" / "altered-name.png", render_png(forged), mode=0o644, what="PNG")
        say(f"a) the name in the QR is changed to {forged_name}; the verifier:")
        self.check("an altered claim", forged, Code.BAD_SIGNATURE)
        self.caught.add("a")
        # b) a department outside its mandate
        health = self.member(HEALTH)
        kwargs: dict[str, Any] = {
            "issuer": health,
            "key": self.keys[(HEALTH, "log")],
            "serial": "2430600",
            "claims": self.licence["claims"],
            "operator": "op:health1",
            "time": self.now,
            "valid_from": self.now,
        }
        say(f"b) the health commission ({health.name}) issues a business licence; certledger's issuing code:")
        self.refused(
            "b",
            "issuing outside the mandate",
            PolicyError,
            lambda: issue_credential(cert_type=licence, **kwargs),
        )
        rogue = issue_credential(cert_type=dataclasses.replace(licence, issuers=mandates(HEALTH)), **kwargs)
        say("a rogue build skips that check and signs one with the health log key; the verifier:")
        self.check("a certificate outside the mandate", rogue.to_qr_text(REVEAL), Code.NOT_AUTHORISED)
        # c) a licence signed but never logged
        secret = issue_credential(
            cert_type=licence,
            issuer=self.member(AMR),
            key=self.keys[(AMR, "log")],
            serial="2430700",
            claims={**self.licence["claims"], "name": "杭州影子贸易有限公司"},
            operator="op:insider",
            time=self.now,
            valid_from=self.now,
        )
        say(
            "c) an insider signs a licence with the regulator's key but keeps it out of the log; the "
            "verifier syncs the regulator's log again before saying so:"
        )
        self.check("a licence kept out of the log", secret.to_qr_text(REVEAL), Code.NOT_IN_LEDGER)
        self.caught.add("c")
        # d) a revocation by a member without the revoke mandate
        revoke = self._revocation(HEALTH, Reason.ADMINISTRATIVE_PENALTY)
        [index] = self.stores[HEALTH].append(revoke, key=self.keys[(HEALTH, "log")])
        self.witness(HEALTH)
        self.sync()
        say(
            f"d) the health commission, which may not revoke business licences, logs a revoke of the licence "
            f"(its entry {index}, witnessed); the replica syncs, and the verifier ignores it:"
        )
        self.check("the licence revoked without the mandate", self.scanned, Code.VALID, purpose=PURPOSE)
        self.caught.add("d")
        # e) policy rollback
        say(f"e) policy version 1 is served again to a verifier that trusts version {self.trusted.version}:")
        self.refused(
            "e", "a policy rollback", PolicyError, lambda: self.trusted.update(self.v1_doc, now=self.now)
        )
        self.split_view()
        self.rewrite()

    def _revocation(self, member_id: str, reason: Reason) -> Statement:
        return Statement(
            kind=Kind.REVOKE,
            issuer=member_id,
            cert_id=self.credential.cert_id,
            cert_type=LICENCE,
            time=self.now,
            operator=OPERATOR,
            reason=reason,
        )

    def _altered_licence(self, capital: str) -> SignedStatement:
        """The licence's statement with another registered capital, re-signed by the regulator."""
        cred = self.credential
        spec = self.policy.require_type(LICENCE).claim("registered_capital")
        salt = claim_salt(cred.salt_secret, spec.key)
        digests = {**(cred.statement.claim_digests or {})}
        digests[spec.key] = claim_digest(salt, spec.key, canonical_value(spec, capital))
        stmt = dataclasses.replace(cred.statement, claim_digests=digests)
        return SignedStatement.sign(stmt, key=self.keys[(AMR, "log")], key_id=cred.signed.key_id)

    def split_view(self) -> None:
        """f) The regulator signs a fork; its own signer and a witness refuse it, and a
        replica refuses its uncosigned checkpoint."""
        say, key = self.say, self.keys[(AMR, "log")]
        amr = self.stores[AMR]
        with LogStore.create(self.work / "attacks" / "fork.db", origin=amr.origin) as fork:
            fork.append([Entry.from_bytes(d).signed for d in amr.entries(0, self.index)], key=key)
            fork.append([self._altered_licence("壹亿元整")], key=key)
            say(
                f"f) split view: the regulator builds a forked log to show one verifier, with the same "
                f"first {self.index} entries, then the licence with another registered capital; its log "
                "key's memory:"
            )
            self.refused("f", "signing a fork", ConflictError, lambda: fork.checkpoint(self.signers[AMR]))
            note = fork.checkpoint(key)
            say(f"a rogue operator signs it with the bare key (checkpoint {fork.size}); witness {PSB}:")
            alerts = self.witnesses[PSB].alert_count()
            answer = self.submit(PSB, fork, note)
            kept = self.witnesses[PSB].alert_count() - alerts
            if answer.status == 200 or kept != 1:
                raise click.ClickException(
                    "the demo expected the witness to refuse the fork and keep the evidence"
                )
            say(
                f"→ refused, {answer.status}: {answer.body.decode().strip()} (both signed checkpoints of "
                f"size {fork.size}, in witnesses/{PSB}.db)",
                6,
            )
            self.caught.add("f")
            public = self.work / "attacks" / "fork-public"
            copy = TilesDir(public)
            copy.write_tiles(fork, fork.size)
            copy.write_checkpoint(note)
        result = self.verifier.replica(AMR).sync([DirectoryFetcher(root=public)])
        say("the fork, published as a static copy (attacks/fork-public/) for the verifier to sync from:")
        if result.ok:
            raise click.ClickException("the demo expected the fork to be refused, but the replica took it")
        why = "; ".join(result.refused).replace(f"directory {public}: ", "")
        say(f"→ refused by the replica: {why}", 6)

    def rewrite(self) -> None:
        """g) The regulator rewrites an entry in (a copy of) its database; the audit catches it."""
        copy = self.work / "attacks" / "rewritten.db"
        _copy_database(self.stores[AMR].path, copy)
        old = Entry.from_bytes(self.stores[AMR].entry(self.index))
        new = self._altered_licence("壹亿元整")
        entry = encode_entry(
            statement_bytes=new.statement_bytes, key_id=new.key_id, signature=new.signature, prev=old.prev
        )
        _replace_entry(copy, self.index, entry)
        self.say(
            f"g) the regulator rewrites entry {self.index} in a copy of its database (another registered "
            "capital, validly signed); the audit:"
        )
        self.refused("g", "a rewritten log", AuditError, lambda: audit(copy, keys=[self.log_key(AMR)]))

    # -- 7. revoking -----------------------------------------------------------------

    def revoke(self) -> None:
        say = self.say
        say.step(7, "The regulator revokes the licence; every log is audited")
        policy = self.policy
        policy.check_mandate(AMR, LICENCE, "revoke", at=self.now)
        reason = Reason.HOLDER_CEASED
        store = self.stores[AMR]
        [index] = store.append(self._revocation(AMR, reason), key=self.keys[(AMR, "log")])
        ids = self.quorum(AMR, self.witness(AMR))
        say(
            f"revoke statement (reason: {reason.label_zh}, {reason.label_en}) at index {index}; checkpoint "
            f"{store.size} cosigned by {', '.join(ids)}, each after a consistency proof from size {index}"
        )
        self.prove(index, self.work / "revocation.tlog-proof")
        held = self.sync()
        say(f"public security's replica syncs ({held} entries); the same selective QR:")
        self.check("the revoked licence", self.scanned, Code.REVOKED, indent=3, purpose=PURPOSE)
        for m in policy.members:
            witnesses = list(policy.witness_keys(m.id).values())
            report = audit(
                self.stores[m.id], keys=[m.log_verifier_key(k) for k in m.log_keys], witnesses=witnesses
            )
            self.audits += 1
            say(
                f"audit of {m.id:<18} passed: {_count(report.size, 'entry', 'entries')}, "
                f"{_count(report.checkpoints_checked, 'checkpoint')} with their cosignatures, root "
                f"{report.root_hash.hex()[:16]}…"
            )

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        for witness in self.witnesses.values():
            witness.close()
        if self.replica is not None:
            self.replica.close()


def tell(work: Path, say: _Out) -> _Demo:
    """Run the seven steps in the empty directory ``work``; the finished (closed) demo."""
    run = _Demo(work, say)
    try:
        run.consortium()
        run.logs()
        run.issue()
        run.present()
        run.verify()
        run.attacks()
        run.revoke()
    finally:
        run.close()
    return run


@contextmanager
def _workdir(directory: Path | None) -> Iterator[Path]:
    if directory is not None:
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise click.ClickException(f"{directory} is not an empty directory; give a new or empty --dir")
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="certledger-demo-") as tmp:
        yield Path(tmp)


@contextmanager
def _network_dir(directory: Path | None) -> Iterator[Path]:
    """The network demo's data directory: new, empty, or one an earlier run left."""
    if directory is not None:
        if directory.exists() and (
            not directory.is_dir() or (any(directory.iterdir()) and not (directory / STATE_FILE).exists())
        ):
            raise click.ClickException(
                f"{directory} is neither empty nor an earlier demo's directory; give a new or empty --dir"
            )
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
    help="Keep every file (policy, keys, the nodes' and the verifier's data, QR images, logs) in this "
    "directory; a second run with the same directory starts the same consortium again. Default: a "
    "temporary directory, removed at the end.",
)
@click.option("--exit", "exit_after", is_flag=True, help="Tell the story, then stop every process and exit.")
@click.option(
    "--offline",
    is_flag=True,
    help="Tell the story in this one process instead, without servers (the verifier's core on a "
    "replica synced from a static copy of the logs, attacks included); needs an empty --dir.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only a one-line summary.")
def demo(directory: Path | None, exit_after: bool, offline: bool, quiet: bool) -> None:
    """Run a consortium of three departments and a verifier on this machine, and explain it.

    Three department nodes and one verifier start as separate processes on 127.0.0.1;
    a clerk at each node issues a certificate through the clerks' HTTP API (QR codes
    printed and written as PNG files), the verifier checks one of each over HTTP, a
    revocation turns VALID into REVOKED, and a node stops while verification goes on.
    The consortium then runs until Ctrl-C; --exit stops it at once. --offline tells
    the story in one process instead (VALID, STALE, REVOKED and attacks), offline.
    """
    if offline:
        _offline(directory, quiet)
        return
    say = _Out(quiet)
    t0 = time.monotonic()
    with _network_dir(directory) as work, sigterm_as_interrupt():
        say(
            f"certledger demo: a consortium of separate processes on 127.0.0.1, files in {work}",
            0,
            wrap=False,
        )
        net = Network(work, say, qr=not quiet)
        try:
            if net.resumed:
                net.load()
                net.start_all()
                net.check_all(3)
                net.urls(4)
            else:
                net.setup()
                net.start_all()
                net.issue()
                net.check_all(4)
                net.revoke()
                net.node_down()
                net.urls(7)
            seconds = time.monotonic() - t0
            codes = ", ".join(v["code"] for _, v in net.verdicts)
            if quiet:
                click.echo(
                    f"certledger demo: OK in {seconds:.1f}s: {len(net.procs)} processes on 127.0.0.1, "
                    f"verdicts {codes}; verifier {net.url('verifier')}"
                )
            say()
            if exit_after:
                say(f"Told in {seconds:.1f}s; stopping every process.", 0)
            else:
                say(f"Told in {seconds:.1f}s. The consortium runs until Ctrl-C.", 0)
                with contextlib.suppress(KeyboardInterrupt):
                    net.watch()
                say()
                say("Stopping every process.", 0)
        finally:
            net.stop_all()
        if directory is not None:
            say(
                f"The files are kept in {work}; run again with --dir {work} to start it again.", 0, wrap=False
            )


def _offline(directory: Path | None, quiet: bool) -> None:
    """The whole story in this one process (``demo --offline``)."""
    say = _Out(quiet)
    t0 = time.monotonic()
    with _workdir(directory) as work:
        say(f"certledger demo: the whole system in one offline run, files in {work}", 0, wrap=False)
        run = tell(work, say)
        seconds = time.monotonic() - t0
        say()
        if directory is None:
            say(
                f"Done in {seconds:.1f}s. The temporary directory is removed; keep the files with --dir DIR.",
                0,
            )
        else:
            say(f"Done in {seconds:.1f}s. The files are kept in {work}. Try:", 0, wrap=False)
            for args in (
                ["consortium", "verify", "--pinned", work / "policy-v1.note", work / "policy-v2.note"],
                ["log", "audit", work / "logs" / f"{AMR}.db", "--key", str(run.log_key(AMR))],
                ["present", work / "licence.credential.json", "--reveal", ",".join(REVEAL)],
                ["qr", "decode", work / "licence-identity.png"],
                [
                    "verify",
                    "--offline",
                    "--policy",
                    work / "policy-v2.note",
                    "--replica",
                    work / "verifier",
                    "--image",
                    work / "licence-identity.png",
                ],
            ):
                say(shlex.join(["certledger", *map(str, args)]), 5, wrap=False)
        if quiet:
            policy = run.policy
            kept = f"; files in {work}" if directory is not None else ""
            verdicts = ", ".join(v.code.value for _, v in run.verdicts)
            click.echo(
                f"certledger demo: OK in {seconds:.1f}s: policy version {policy.version} "
                f"({len(policy.members)} members, {len(policy.types)} types); licence issued, cosigned by "
                f"{run.cosigned}/{policy.witness_quorum} witnesses, presented (QR of "
                f"{len(run.texts['full'])} and {len(run.texts['identity'])} characters, read back) and "
                f"verified at another department's verifier; {len(run.caught)} attacks refused; revoked; "
                f"verdicts {verdicts}; {run.audits} log audits passed{kept}"
            )
