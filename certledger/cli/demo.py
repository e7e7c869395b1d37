"""``certledger demo``: the whole system, offline, in one run, explained step by step.

1. A consortium of three Hangzhou departments agrees on a trust policy: version 1 from
   the spec shipped in ``certledger/data/demo-consortium.toml``, built by the code
   ``certledger consortium init`` runs (keys generated and saved the same way), signed
   by a threshold of governance keys and pinned; version 2 adds a certificate type
   (``certledger/data/demo-food-permit.toml``), is signed by both thresholds and walked to.
2. Each department opens its own log, keyed by its log key in the policy; every
   checkpoint is cosigned by the other two departments' witnesses.
3. The market regulator issues the reference business licence
   (``certledger/data/business_licence.json``: the project's reference licence, with its
   id's check character corrected), logs it and has the checkpoint witnessed.
4. The holder makes a full and a selective ``CL1:`` presentation, writes them as PNG
   and SVG QR codes and reads the PNG back.
5. Public security verifies the selective one offline with the policy and its mirror
   of the regulator's log.
6. Attacks, each refused with the project's own error.
7. The regulator revokes the licence; the new checkpoint is witnessed; every log is
   audited.

Two stand-ins, because the node and the verifier service do not exist yet: a witness
is :class:`_Witness` below (it checks the log's signature and the consistency with
what it cosigned before, then cosigns), and a mirror is a copy of the log's database
where a node would fetch the log's tiles. Turning a replica's later statements into
REVOKED or STALE verdicts is the verifier service's job; the demo says so rather than
doing it.
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
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import click

from certledger.cli.consortium import key_file
from ledger.credential.claims import canonical_value, claim_digest, claim_salt
from ledger.credential.credential import issue_credential
from ledger.credential.presentation import Presentation, check_presentation
from ledger.credential.qr import make_qr, read_qr_file, render_png, render_svg
from ledger.errors import (
    AuditError,
    LedgerError,
    PolicyError,
    ProofError,
    SignatureError,
    StorageError,
)
from ledger.files import write_file
from ledger.keys import PublicKey, SigningKey, VerifierKey
from ledger.log import merkle, tlogproof
from ledger.log.audit import audit
from ledger.log.certid import CertId
from ledger.log.checkpoint import Checkpoint, CosignatureSigner, OpenedCheckpoint, cosign, open_checkpoint
from ledger.log.statement import Entry, Kind, Reason, SignedStatement, Statement, encode_entry
from ledger.log.store import LogStore
from ledger.trust.consortium import KeyRequest, apply_changes, genesis, parse_change, read_toml
from ledger.trust.policy import Member, Policy, format_time, mandates
from ledger.trust.policy_doc import add_signature, parse_document, sign_proposal
from ledger.trust.trust import TrustedPolicy, signed_by

__all__ = ["demo"]

AMR, PSB, HEALTH = "hangzhou-xihu-amr", "hangzhou-psb", "hangzhou-health"
LICENCE = "business_licence"
#: Statements already in each log before the demo's own, so that proofs have some depth.
EARLIER = {AMR: 255, HEALTH: 40, PSB: 0}
#: The selective presentation's claims, and the purpose public security checks them for.
REVEAL = ("name", "uscc")
PURPOSE = "identity"
OPERATOR = "op:7f3a9c"
#: Output width.
WIDTH = 100
_CHINA = dt.timezone(dt.timedelta(hours=8))


def _data(name: str) -> bytes:
    """A file shipped in ``certledger/data``."""
    return resources.files("certledger").joinpath("data", name).read_bytes()


def _midnight(day: str) -> int:
    """Unix seconds of 00:00 China time on ``day`` (YYYY-MM-DD)."""
    return int(dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), _CHINA).timestamp())


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


class _Witness:
    """A department's witness: cosigns another member's checkpoint only if the log
    signed it and it extends the last checkpoint of that log this witness cosigned."""

    def __init__(self, member: Member, key: SigningKey) -> None:
        self.member = member
        self.signer = CosignatureSigner(name=member.witness_key.name, key=key)
        self.seen: dict[str, Checkpoint] = {}

    def cosign(
        self,
        note: bytes,
        *,
        log: Member,
        log_key: VerifierKey,
        prove: Callable[[int, int], Sequence[bytes]],
        now: int,
    ) -> bytes:
        """``note`` with this witness's cosignature added; ``prove(old, new)`` gives the
        log's consistency proof. ProofError, with nothing remembered, if the log forked."""
        cp = open_checkpoint(note, log_key=log_key).checkpoint
        last = self.seen.get(cp.origin)
        if last is not None:
            refusal = f"witness {self.member.id} refuses to cosign {log.id} at size {cp.size}"
            if cp.size < last.size:
                raise ProofError(f"{refusal}: it cosigned size {last.size} already, and a log never shrinks")
            if cp.size == last.size and cp.root_hash != last.root_hash:
                raise ProofError(f"{refusal}: it cosigned another root for that size")
            if 0 < last.size < cp.size:
                try:
                    proof = prove(last.size, cp.size)
                    merkle.check_tree(proof, cp.size, cp.root_hash, last.size, last.root_hash)
                except ProofError as e:
                    raise ProofError(
                        f"{refusal}: the tree does not extend the one of size {last.size} "
                        f"it cosigned before ({e})"
                    ) from None
        cosigned = cosign(note, self.signer, timestamp=now)
        self.seen[cp.origin] = cp
        return cosigned


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


class _Out:
    """Prints the demo's lines wrapped at :data:`WIDTH` columns; nothing when quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, text: str = "", indent: int = 3, *, wrap: bool = True) -> None:
        if self.quiet:
            return
        if not text or not wrap:
            click.echo(" " * indent + text if text else "")
            return
        click.echo(
            textwrap.fill(
                text,
                WIDTH,
                initial_indent=" " * indent,
                subsequent_indent=" " * (indent + 2),
                break_long_words=False,
                break_on_hyphens=False,
            )
        )

    def step(self, n: int, title: str) -> None:
        self()
        self(f"{n}. {title}", 0)


class _Demo:
    """The demo's state: one consortium, its logs, witnesses and files under ``work``."""

    def __init__(self, work: Path, say: _Out) -> None:
        self.work = work
        self.say = say
        self.now = int(time.time())
        self.keys: dict[tuple[str, str], SigningKey] = {}  # (member id or key name, role) -> key
        self.stores: dict[str, LogStore] = {}
        self.witnesses: dict[str, _Witness] = {}
        self.witnessed: dict[str, bytes] = {}  # member id -> its latest cosigned checkpoint
        self.texts: dict[str, str] = {}  # "full" / "identity" -> CL1 text
        self.caught: set[str] = set()  # the attacks refused, by letter
        self.cosigned = 0  # witnesses that cosigned the licence's checkpoint
        self.audits = 0  # logs audited in step 7

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

    def witness(self, member_id: str, note: bytes) -> bytes:
        """Have every other member's witness cosign ``note``; keep and return the result."""
        log = self.member(member_id)
        prove = self.stores[member_id].consistency_proof
        for wid in self.policy.witness_keys(member_id):
            note = self.witnesses[wid].cosign(
                note, log=log, log_key=self.log_key(member_id), prove=prove, now=self.now
            )
        self.witnessed[member_id] = note
        path = self.work / "logs" / f"{member_id}.checkpoint"
        write_file(path, note, mode=0o644, overwrite=True, what="checkpoint")
        return note

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
            key.save(key_file(keys_dir, request))
            self.keys[(request.member or request.name, request.role)] = key
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
        policy = self.policy
        for m in policy.members:
            self.witnesses[m.id] = _Witness(m, self.keys[(m.id, "witness")])
        say(
            f"a checkpoint counts once {policy.witness_quorum} other departments' witnesses cosign it; a "
            "witness first checks that it extends what it cosigned before (logs/MEMBER.db, .checkpoint)"
        )
        for m in policy.members:
            key = self.keys[(m.id, "log")]
            if m.log_keys[-1].public_key != key.public_key:
                raise click.ClickException(f"the policy does not list {m.id}'s log key")
            store = LogStore.create(work / "logs" / f"{m.id}.db", origin=m.origin)
            self.stores[m.id] = store
            earlier = [self._earlier(m, i) for i in range(EARLIER[m.id])]
            store.append(earlier, key=key)
            ids = self.quorum(m.id, self.witness(m.id, store.checkpoint(key)))
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
        witnessed = self.witness(AMR, store.checkpoint(key))
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

    def verify(self) -> None:
        say, work = self.say, self.work
        psb = self.member(PSB)
        say.step(5, f"Public security ({psb.name}) checks the selective QR offline")
        policy = self.policy
        say(
            f"it has only policy version {policy.version} (walked to from its pin) and its mirror of the "
            "regulator's log"
        )
        checked = check_presentation(self.scanned, policy=policy, now=self.now, purpose=PURPOSE)
        kid = checked.signed.key_id.hex()
        needs = ", ".join(checked.certificate_type.purposes[PURPOSE])
        say(f"✓ parsed strictly; issuer {checked.issuer.id} (log key {kid}); mandate: may issue {LICENCE}")
        say(
            f"✓ signature over the rebuilt statement; {len(checked.claims)} disclosed claims match their "
            f"digests, {len(checked.hidden)} stay hidden; purpose '{PURPOSE}' needs {needs}: disclosed"
        )
        mirror = work / "mirror" / f"{AMR}.db"
        mirror.parent.mkdir()
        _copy_database(self.stores[AMR].path, mirror)
        report = audit(mirror, keys=[self.log_key(AMR)])
        say(
            f"✓ mirror/{mirror.name} audited against the policy's log key: {report.size} entries, "
            f"{report.signatures_checked} signatures, {report.hashes_checked} hashes"
        )
        opened = self.prove(mirror, checked.signed, work / "licence.tlog-proof")
        witnessed_at = max(opened.cosignatures.values())
        policy.log_key(AMR, checked.signed.key_id, at=checked.statement.time, witnessed_at=witnessed_at)
        say(
            f"✓ log key {kid} was valid at the statement's time, and not marked compromised before the "
            "entry was witnessed"
        )
        ctype = checked.certificate_type
        say(f"核验通过 VERIFIED: a genuine {ctype.name} of {checked.issuer.name}, in its witnessed log:")
        for c in checked.claims:
            say(f"{c.label} {c.name}: {c.text}", 5)
        say(
            "(whether it has been revoked since, and whether the mirror is fresh enough, the verifier "
            "service will judge: it is not built yet)"
        )

    def prove(self, mirror: Path, signed: SignedStatement, out: Path) -> OpenedCheckpoint:
        """Find ``signed`` in the mirror, write its tlog-proof to ``out``, read it back, verify it."""
        with LogStore.open(mirror, readonly=True) as log:
            found = (i for i, data in enumerate(log.entries()) if Entry.from_bytes(data).signed == signed)
            index = next(found, None)
            if index is None:
                raise click.ClickException("the statement is not in the mirrored log")
            proof = tlogproof.make_proof(
                index=index, signed_checkpoint=self.witnessed[AMR], read=log.read_hashes
            )
            entry = log.entry(index)
        write_file(out, proof.to_bytes(), mode=0o644, overwrite=True, what="proof")
        policy = self.policy
        opened = tlogproof.verify(
            tlogproof.parse(out.read_bytes()),
            log_key=self.log_key(AMR),
            leaf=entry,
            witnesses=list(policy.witness_keys(AMR).values()),
            quorum=policy.witness_quorum,
            now=self.now,
        )
        policy.check_fresh(max(opened.cosignatures.values()), now=self.now)
        self.say(
            f"✓ entry {index} is in the tree of size {opened.checkpoint.size}: {out.name} "
            f"(c2sp.org/tlog-proof, {_count(len(proof.proof), 'hash', 'hashes')}) verified against the "
            f"checkpoint, cosigned by {len(opened.cosignatures)}/{policy.witness_quorum} witnesses"
        )
        return opened

    # -- 6. attacks ------------------------------------------------------------------

    def attacks(self) -> None:
        say, policy = self.say, self.policy
        say.step(6, "Attacks, each refused")
        (self.work / "attacks").mkdir()
        licence = policy.require_type(LICENCE)
        # a) a changed claim value
        p = Presentation.from_text(self.scanned)
        forged_name = "杭州云栖数字科技集团有限公司"
        values = {**p.values, licence.claim("name").key: forged_name}
        forged = dataclasses.replace(p, values=values).to_text()
        write_file(self.work / "attacks" / "altered-name.png", render_png(forged), mode=0o644, what="PNG")
        say(f"a) the name in the QR is changed to {forged_name}; the verifier:")
        self.refused(
            "a",
            "an altered claim",
            SignatureError,
            lambda: check_presentation(forged, policy=policy, now=self.now, purpose=PURPOSE),
        )
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
        self.refused(
            "b",
            "a certificate outside the mandate",
            PolicyError,
            lambda: check_presentation(rogue.to_qr_text(REVEAL), policy=policy, now=self.now),
        )
        # c) policy rollback
        say(f"c) policy version 1 is served again to a verifier that trusts version {self.trusted.version}:")
        self.refused(
            "c", "a policy rollback", PolicyError, lambda: self.trusted.update(self.v1_doc, now=self.now)
        )
        self.split_view()
        self.rewrite()

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
        """d) The regulator signs a fork; a witness refuses it, and verifiers need the quorum."""
        say, key, policy = self.say, self.keys[(AMR, "log")], self.policy
        amr = self.stores[AMR]
        with LogStore.create(self.work / "attacks" / "fork.db", origin=amr.origin) as fork:
            fork.append([Entry.from_bytes(d).signed for d in amr.entries(0, self.index)], key=key)
            fork.append([self._altered_licence("壹亿元整"), self._earlier(self.member(AMR), 9999)], key=key)
            note = fork.checkpoint(key)
            say(
                f"d) split view: the regulator signs a forked log to show one verifier, with the same first "
                f"{self.index} entries, then the licence with another registered capital (checkpoint "
                f"{fork.size}); witness {PSB}:"
            )
            self.refused(
                "d",
                "a split view",
                ProofError,
                lambda: self.witnesses[PSB].cosign(
                    note,
                    log=self.member(AMR),
                    log_key=self.log_key(AMR),
                    prove=fork.consistency_proof,
                    now=self.now,
                ),
            )
            report = audit(fork, keys=[self.log_key(AMR)])
            proof = fork.tlog_proof(self.index)
            say(
                f"the fork passes an audit on its own ({report.size} entries), but a verifier given a proof "
                "against its uncosigned checkpoint:"
            )
            self.refused(
                "d",
                "a checkpoint without a witness quorum",
                SignatureError,
                lambda: tlogproof.verify(
                    proof,
                    log_key=self.log_key(AMR),
                    leaf=fork.entry(self.index),
                    witnesses=list(policy.witness_keys(AMR).values()),
                    quorum=policy.witness_quorum,
                ),
            )

    def rewrite(self) -> None:
        """e) The regulator rewrites an entry in (a copy of) its database; the audit catches it."""
        copy = self.work / "attacks" / "rewritten.db"
        _copy_database(self.stores[AMR].path, copy)
        old = Entry.from_bytes(self.stores[AMR].entry(self.index))
        new = self._altered_licence("壹亿元整")
        entry = encode_entry(
            statement_bytes=new.statement_bytes, key_id=new.key_id, signature=new.signature, prev=old.prev
        )
        _replace_entry(copy, self.index, entry)
        self.say(
            f"e) the regulator rewrites entry {self.index} in a copy of its database (another registered "
            "capital, validly signed); the audit:"
        )
        self.refused("e", "a rewritten log", AuditError, lambda: audit(copy, keys=[self.log_key(AMR)]))

    # -- 7. revoking -----------------------------------------------------------------

    def revoke(self) -> None:
        say = self.say
        say.step(7, "The regulator revokes the licence; every log is audited")
        policy = self.policy
        policy.check_mandate(AMR, LICENCE, "revoke", at=self.now)
        reason = Reason.HOLDER_CEASED
        stmt = Statement(
            kind=Kind.REVOKE,
            issuer=AMR,
            cert_id=self.credential.cert_id,
            cert_type=LICENCE,
            time=self.now,
            operator=OPERATOR,
            reason=reason,
        )
        store, key = self.stores[AMR], self.keys[(AMR, "log")]
        [index] = store.append(stmt, key=key)
        ids = self.quorum(AMR, self.witness(AMR, store.checkpoint(key)))
        say(
            f"revoke statement (reason: {reason.label_zh}, {reason.label_en}) at index {index}; checkpoint "
            f"{store.size} cosigned by {', '.join(ids)}, each after a consistency proof from size {index}"
        )
        mirror = self.work / "mirror" / f"{AMR}.db"
        _copy_database(store.path, mirror)
        self.prove(mirror, Entry.from_bytes(store.entry(index)).signed, self.work / "revocation.tlog-proof")
        for m in policy.members:
            report = audit(self.stores[m.id], keys=[m.log_verifier_key(k) for k in m.log_keys])
            self.audits += 1
            say(
                f"audit of {m.id:<18} passed: {_count(report.size, 'entry', 'entries')}, "
                f"{_count(report.checkpoints_checked, 'checkpoint')}, root {report.root_hash.hex()[:16]}…"
            )
        say(
            "not built yet: the verifier service, which keeps a replica in sync and turns this revoke "
            "entry into a REVOKED verdict, and a replica older than the freshness limit into STALE"
        )

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


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


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep every file (policy, keys, logs, credential, QR images, proofs) in this new or empty "
    "directory. Default: a temporary directory, removed at the end.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only a one-line summary.")
def demo(directory: Path | None, quiet: bool) -> None:
    """Run the whole system offline and explain each step.

    Three departments agree on a trust policy, each opens a log, the market
    regulator issues a business licence that the others witness, the holder shows
    it as a QR code, public security verifies it offline, attacks are refused, and
    the licence is revoked. Takes a few seconds and needs no network.
    """
    say = _Out(quiet)
    t0 = time.monotonic()
    with _workdir(directory) as work:
        say(f"certledger demo: the whole system in one offline run, files in {work}", 0)
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
        seconds = time.monotonic() - t0
        say()
        if directory is None:
            say(
                f"Done in {seconds:.1f}s. The temporary directory is removed; keep the files with --dir DIR.",
                0,
            )
        else:
            say(f"Done in {seconds:.1f}s. The files are kept in {work}. Try:", 0)
            for args in (
                ["consortium", "verify", "--pinned", work / "policy-v1.note", work / "policy-v2.note"],
                ["log", "audit", work / "logs" / f"{AMR}.db", "--key", str(run.log_key(AMR))],
                ["present", work / "licence.credential.json", "--reveal", ",".join(REVEAL)],
                ["qr", "decode", work / "licence-identity.png"],
            ):
                say(shlex.join(["certledger", *map(str, args)]), 5, wrap=False)
        if quiet:
            policy = run.policy
            kept = f"; files in {work}" if directory is not None else ""
            click.echo(
                f"certledger demo: OK in {seconds:.1f}s: policy version {policy.version} "
                f"({len(policy.members)} members, {len(policy.types)} types); licence issued, cosigned by "
                f"{run.cosigned}/{policy.witness_quorum} witnesses, presented (QR of "
                f"{len(run.texts['full'])} and {len(run.texts['identity'])} characters, read back) and "
                f"verified offline; {len(run.caught)} attacks refused; revoked; {run.audits} log audits "
                f"passed{kept}"
            )
