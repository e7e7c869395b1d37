"""``certledger import FILE --type TYPE --node URL``: issue a department's existing register.

The CSV may be UTF-8, UTF-8 with a byte-order mark, or GB 18030 (what spreadsheet
software in China exports); columns are matched by claim name or by the claim's Chinese
label, as the node lists them at ``/v1/types``. Optional columns ``valid_from`` /
``有效期起`` and ``valid_until`` / ``有效期至`` give each row's validity (dates).

Rows go to the node's batch API. Each row's ``Idempotency-Key`` is derived from its
content, so a re-run, or a run after an interruption, never issues a row twice: rows
recorded in ``OUT/imported.csv`` with their credential file present are skipped without
asking the node, and any other row already issued gets its certificate back. Every bad
row is written to the error file (UTF-8 with BOM: line number and reason) and the rest
go on. For each certificate ``OUT/<cert id>.json`` (the credential) and its QR code
(``.png``/``.svg``, ``--qr``) are written for printing or delivery.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import hashlib
import io
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
from tqdm import tqdm

from ledger.credential.qr import render_png, render_svg
from ledger.errors import FileError, MalformedError, StorageError
from ledger.files import read_capped

__all__ = ["decode_csv", "import_", "read_rows"]

MAX_FILE = 1 << 30
_VALID_FROM = ("valid_from", "有效期起", "有效期自")
_VALID_UNTIL = ("valid_until", "有效期至", "有效期止")
_DATE = re.compile(r"\s*([0-9]{4})\s*[-/.年]\s*([0-9]{1,2})\s*[-/.月]\s*([0-9]{1,2})\s*日?\s*")
_CHINA = _dt.timezone(_dt.timedelta(hours=8))


def decode_csv(raw: bytes) -> tuple[str, str]:
    """The text of a CSV file and the encoding found: utf-8-sig, utf-8 or gb18030."""
    if raw.startswith(b"\xef\xbb\xbf"):
        try:
            return raw[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as e:
            raise MalformedError(f"the file starts like UTF-8 but byte {e.start + 3} is not UTF-8") from None
    with contextlib.suppress(UnicodeDecodeError):
        return raw.decode("utf-8"), "utf-8"
    try:
        return raw.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as e:
        raise MalformedError(f"the file is neither UTF-8 nor GB 18030 (byte {e.start})") from None


def _date(value: str) -> str | None:
    m = _DATE.fullmatch(value)
    if m is None:
        return None
    try:
        return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
    except ValueError:
        return None


@dataclass
class Row:
    """One data row of the register, ready to send (or why it cannot be)."""

    line: int
    claims: dict[str, Any] = field(default_factory=dict)
    valid_from: int | None = None
    valid_until: int | None = None
    key: str = ""
    problem: str | None = None

    def item(self) -> dict[str, Any]:
        return {
            "claims": self.claims,
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
            "idempotency_key": self.key,
        }


def _columns(header: list[str], schema: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    by_name = {c["name"]: c for c in schema["claims"]}
    by_label = {c["label"]: c for c in schema["claims"]}
    out: list[tuple[str, dict[str, Any] | None]] = []
    for cell in header:
        h = cell.strip()
        if h in _VALID_FROM:
            out.append(("valid_from", None))
        elif h in _VALID_UNTIL:
            out.append(("valid_until", None))
        elif h in by_name or h in by_label:
            spec = by_name.get(h) or by_label[h]
            out.append((spec["name"], spec))
        else:
            raise MalformedError(
                f"column {h!r} is neither a claim name nor a label of {schema['code']} "
                f"(its claims: {', '.join(c['name'] + '/' + c['label'] for c in schema['claims'])})"
            )
    names = [n for n, _ in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MalformedError(f"more than one column for {', '.join(dup)}")
    missing = [c["name"] for c in schema["claims"] if c["required"] and c["name"] not in names]
    if missing:
        raise MalformedError(f"no column for the required claim(s) {', '.join(missing)}")
    return out


def _day_start(iso: str) -> int:
    return int(_dt.datetime.fromisoformat(iso).replace(tzinfo=_CHINA).timestamp())


def read_rows(text: str, schema: dict[str, Any]) -> Iterator[Row]:
    """Each non-empty data row with its line number; a row that cannot be read carries its problem."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise MalformedError("the file is empty: no header row") from None
    except csv.Error as e:
        raise MalformedError(f"line 1: {e}") from None
    columns = _columns(header, schema)
    seen: dict[str, int] = {}
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield Row(line=line, problem=f"not valid CSV: {e}")
            continue
        if not any(c.strip() for c in cells):
            continue
        row = Row(line=line)
        if len(cells) != len(columns):
            row.problem = f"{len(cells)} cells, but the header has {len(columns)} columns"
            yield row
            continue
        for (name, spec), raw in zip(columns, cells, strict=True):
            value = raw.strip()
            if not value:
                continue
            if spec is None:
                iso = _date(value)
                if iso is None:
                    row.problem = f"{name}: {value!r} is not a date (YYYY-MM-DD)"
                    break
                setattr(row, name, _day_start(iso))
            elif spec["kind"] == "integer":
                if not re.fullmatch(r"-?[0-9]+", value):
                    row.problem = f"claim {name} ({spec['label']}): {value!r} is not a whole number"
                    break
                row.claims[name] = int(value)
            elif spec["kind"] == "date":
                row.claims[name] = _date(value) or value
            else:
                row.claims[name] = value
        if row.problem is None:
            digest = hashlib.sha256(
                json.dumps(
                    [schema["code"], row.claims, row.valid_from, row.valid_until],
                    sort_keys=True,
                    ensure_ascii=False,
                ).encode()
            ).hexdigest()
            row.key = f"import:{schema['code']}:{digest[:40]}"
            if row.key in seen:
                row.problem = f"the same certificate as line {seen[row.key]}"
            else:
                seen[row.key] = line
        yield row


class _Client:
    def __init__(self, url: str, token: str, retries: int) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=120.0
        )
        self._retries = retries

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        delay = 0.5
        for attempt in range(self._retries + 1):
            try:
                r = self._http.request(method, path, **kw)
            except httpx.TransportError as e:
                if attempt == self._retries:
                    raise StorageError(f"cannot reach the node: {e}") from None
            else:
                if r.status_code < 500:
                    return r
                if attempt == self._retries:
                    raise StorageError(f"the node answered {r.status_code}: {r.text[:200]}")
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise StorageError("unreachable")


def _error_text(r: httpx.Response) -> str:
    try:
        return str(r.json().get("error", r.text))
    except ValueError:
        return r.text[:200]


def _load_done(path: Path, out: Path) -> dict[str, str]:
    done: dict[str, str] = {}
    if not path.exists():
        return done
    with path.open(encoding="utf-8", newline="") as f:
        for rec in csv.reader(f):
            if len(rec) == 3 and rec[0] != "line" and (out / f"{rec[2]}.json").exists():
                done[rec[1]] = rec[2]
    return done


@click.command("import", short_help="Issue an existing register (CSV) through a node.")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--type", "type_code", required=True, help="Certificate type code, e.g. food_business_permit.")
@click.option(
    "--node", "url", required=True, envvar="CERTLEDGER_NODE", show_envvar=True, help="The node's URL."
)
@click.option(
    "--token",
    required=True,
    envvar="CERTLEDGER_TOKEN",
    show_envvar=True,
    help="A clerk token with the issue role.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("issued"),
    show_default=True,
)
@click.option(
    "--errors", "errors", type=click.Path(dir_okay=False, path_type=Path), help="Default: OUT/errors.csv."
)
@click.option(
    "--batch", default=500, show_default=True, type=click.IntRange(1, 5000), help="Rows per request."
)
@click.option(
    "--qr",
    default="png",
    show_default=True,
    type=click.Choice(["png", "svg", "both", "none"]),
    help="QR images.",
)
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def import_(
    *,
    file: Path,
    type_code: str,
    url: str,
    token: str,
    out: Path,
    errors: Path | None,
    batch: int,
    qr: str,
    progress: bool,
) -> None:
    """Issue every row of FILE as a TYPE certificate; bad rows go to the error file."""
    text, encoding = decode_csv(read_capped(file, limit=MAX_FILE, what="register"))
    client = _Client(url, token, retries=5)
    try:
        r = client.request("GET", "/v1/types")
        if r.status_code != 200:
            raise StorageError(f"the node refused to list its types: {_error_text(r)}")
        schema = next((t for t in r.json()["types"] if t["code"] == type_code), None)
        if schema is None or not schema["may_issue"]:
            raise MalformedError(f"this node's department may not issue {type_code}")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FileError(f"{out}: cannot create the output directory: {e.strerror}") from None
        progress_file = out / "imported.csv"
        done = _load_done(progress_file, out)
        rows = list(read_rows(text, schema))
        bad: list[Row] = [row for row in rows if row.problem is not None]
        to_send = [row for row in rows if row.problem is None and row.key not in done]
        skipped = sum(1 for row in rows if row.problem is None and row.key in done)
        issued = 0
        bar = tqdm(total=len(rows), unit="row", disable=not progress, desc=file.name)
        bar.update(len(rows) - len(to_send))
        new_log = not progress_file.exists()
        with progress_file.open("a", encoding="utf-8", newline="") as log:
            writer = csv.writer(log)
            if new_log:
                writer.writerow(["line", "key", "cert_id"])
            for i in range(0, len(to_send), batch):
                chunk = to_send[i : i + batch]
                while chunk:
                    r = client.request(
                        "POST",
                        "/v1/certificates/batch",
                        json={"type": type_code, "items": [row.item() for row in chunk]},
                    )
                    if r.status_code == 422 and "problems" in r.json():
                        problems: dict[int, list[str]] = {}
                        for p in r.json()["problems"]:
                            problems.setdefault(p["item"], []).append(f"{p['field']}: {p['rule']}")
                        for n, why in problems.items():
                            chunk[n].problem = "; ".join(why)
                            bad.append(chunk[n])
                        bar.update(len(problems))
                        chunk = [row for n, row in enumerate(chunk) if n not in problems]
                        continue
                    if r.status_code not in (200, 201):
                        raise StorageError(f"the node refused a batch ({r.status_code}): {_error_text(r)}")
                    results = r.json()["certificates"]
                    for res in results:
                        _write_outputs(out, res, qr)
                    # One flush for the whole batch (a file-by-file fsync costs
                    # milliseconds each): a row is listed as imported only once its
                    # files are on disk.
                    os.sync()
                    for row, res in zip(chunk, results, strict=True):
                        writer.writerow([row.line, row.key, res["cert_id"]])
                        if res["replayed"]:
                            skipped += 1
                        else:
                            issued += 1
                    log.flush()
                    bar.update(len(chunk))
                    break
        bar.close()
    finally:
        client.close()
    err_path = errors if errors is not None else out / "errors.csv"
    bad.sort(key=lambda row: row.line)
    with err_path.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(["line", "reason"])
        for row in bad:
            w.writerow([row.line, row.problem])
    click.echo(
        f"{file.name} ({encoding}): {issued} issued, {skipped} already imported, {len(bad)} bad row(s)"
        + (f" listed in {err_path}" if bad else ""),
        err=True,
    )


def _write_outputs(out: Path, res: dict[str, Any], qr: str) -> None:
    """Write one certificate's files, each one whole (written aside, then renamed).

    They hold the holder's claim values (and the full credential's secret), so they are
    readable by the operator only. The credential file is written last: a re-run takes
    a row as imported only when that file exists (``_load_done``), and the node's
    idempotency key brings the same certificate back for a row whose files were lost.
    The caller flushes a batch's files to disk before listing its rows as imported.
    """
    cid = res["cert_id"]
    if qr in ("png", "both"):
        _write_whole(out / f"{cid}.png", render_png(res["qr_text"]))
    if qr in ("svg", "both"):
        _write_whole(out / f"{cid}.svg", render_svg(res["qr_text"]))
    text = json.dumps(res["credential"], ensure_ascii=False, indent=2) + "\n"
    _write_whole(out / f"{cid}.json", text.encode("utf-8"))


def _write_whole(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise FileError(f"{path}: cannot write it: {e.strerror}") from None
