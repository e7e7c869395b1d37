"""ledger.files: capped reads, durable writes with exact modes, strict JSON."""

import contextlib
import errno
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import FileError, LedgerError, MalformedError, TooLargeError
from ledger.files import fsync_path, loads_json, read_capped, write_file

# -- read_capped -----------------------------------------------------------------------


def test_read_capped_reads_up_to_the_limit(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    assert read_capped(p, limit=100, what="test file") == b"x" * 100
    assert read_capped(str(p), limit=1000, what="test file") == b"x" * 100
    with pytest.raises(TooLargeError, match=rf"^{p}: the test file is larger than the 99-byte limit$"):
        read_capped(p, limit=99, what="test file")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert read_capped(empty, limit=0, what="test file") == b""


def test_read_capped_unreadable_paths(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(FileError, match=rf"^{missing}: cannot read the spec: No such file or directory$"):
        read_capped(missing, limit=10, what="spec")
    with pytest.raises(FileError, match=rf"^{tmp_path}: cannot read the spec: Is a directory$"):
        read_capped(tmp_path, limit=10, what="spec")
    with pytest.raises(FileError, match="cannot read the spec: embedded null byte"):
        read_capped("a\0b", limit=10, what="spec")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(FileError, match="cannot read the spec: Not a directory"):
        read_capped(tmp_path / "file" / "below", limit=10, what="spec")


def test_read_capped_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "secret"
    p.write_bytes(b"x")
    p.chmod(0)
    if os.geteuid() == 0:
        # root reads files whatever their mode: make open() refuse as the kernel would for others
        real_open = open

        def refusing_open(file: object, *args: object, **kwargs: object) -> object:
            if file == p:
                raise PermissionError(13, "Permission denied", str(p))
            return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

        monkeypatch.setattr("builtins.open", refusing_open)
    with pytest.raises(FileError, match=rf"^{p}: cannot read the key: Permission denied$"):
        read_capped(p, limit=10, what="key")


def test_read_capped_endless_device_stays_capped() -> None:
    with pytest.raises(TooLargeError, match="larger than the 4096-byte limit"):
        read_capped("/dev/zero", limit=4096, what="image")


def _fifo_writer(path: Path, data: bytes) -> threading.Thread:
    def write() -> None:
        # the reader stops at its cap and closes the pipe, which breaks it for the writer
        with contextlib.suppress(BrokenPipeError), open(path, "wb") as f:
            f.write(data)

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


def test_read_capped_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = _fifo_writer(fifo, b"y" * 5000)
    assert read_capped(fifo, limit=5000, what="spec") == b"y" * 5000
    writer.join(timeout=10)
    writer = _fifo_writer(fifo, b"z" * 1_000_000)  # far more than the cap, more than a pipe buffer
    with pytest.raises(TooLargeError, match=rf"^{fifo}: the spec is larger than the 1000-byte limit$"):
        read_capped(fifo, limit=1000, what="spec")
    writer.join(timeout=10)
    assert not writer.is_alive()


# -- write_file ------------------------------------------------------------------------


@pytest.fixture(params=[0o077, 0o022, 0o000, 0o777], ids=lambda m: f"umask{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640, 0o400])
def test_write_file_mode_is_exact_whatever_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    new, replaced = tmp_path / "new", tmp_path / "replaced"
    write_file(new, b"data", mode=mode, what="test file")
    assert new.read_bytes() == b"data" and _mode(new) == mode
    replaced.write_bytes(b"old")
    replaced.chmod(0o666)
    write_file(replaced, b"new", mode=mode, overwrite=True, what="test file")
    assert replaced.read_bytes() == b"new" and _mode(replaced) == mode
    write_file(tmp_path / "fresh", b"", mode=mode, overwrite=True, what="test file")
    assert _mode(tmp_path / "fresh") == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "new", "replaced"]


def test_write_file_refuses_to_overwrite(tmp_path: Path) -> None:
    p = tmp_path / "k.pem"
    p.write_bytes(b"precious")
    with pytest.raises(FileError, match=rf"^{p}: file exists; refusing to overwrite it with the key$"):
        write_file(p, b"other", mode=0o600, what="key")
    assert p.read_bytes() == b"precious"
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileError, match="file exists; refusing to overwrite"):
        write_file(link, b"other", mode=0o600, what="key")
    assert not (tmp_path / "elsewhere").exists()


def test_write_file_errors_name_the_path(tmp_path: Path) -> None:
    p = tmp_path / "no-such-dir" / "f"
    with pytest.raises(FileError, match=rf"^{p}: cannot create the PNG: No such file or directory$"):
        write_file(p, b"x", mode=0o644, what="PNG")
    with pytest.raises(FileError, match=rf"^{p}: cannot write the PNG: No such file or directory$"):
        write_file(p, b"x", mode=0o644, overwrite=True, what="PNG")
    (tmp_path / "inside").write_bytes(b"")
    with pytest.raises(FileError, match=rf"^{tmp_path}: cannot write the PNG: Is a directory$"):
        write_file(tmp_path, b"x", mode=0o644, overwrite=True, what="PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inside"]  # no temporary file left


def test_failed_replace_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "policy-v2.note"
    p.write_bytes(b"old")

    def fail(*args: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(FileError, match=rf"^{p}: cannot write the policy: Invalid cross-device link$"):
        write_file(p, b"new", mode=0o644, overwrite=True, what="policy")
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["policy-v2.note"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_full_disk_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overwrite: bool
) -> None:
    real_write = os.write

    def short_then_full(fd: int, data: Any) -> int:
        if len(data) > 3:
            return real_write(fd, bytes(data[:3]))  # a short write first: the rest must follow
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_full)
    p = tmp_path / "cred.json"
    with pytest.raises(FileError, match=rf"^{p}: cannot write the credential: No space left on device$"):
        write_file(p, b"0123456789", mode=0o600, overwrite=overwrite, what="credential")
    assert list(tmp_path.iterdir()) == []


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    data = bytes(range(256)) * 40
    write_file(tmp_path / "a", data, mode=0o600, what="test file")
    write_file(tmp_path / "a", data[::-1], mode=0o600, overwrite=True, what="test file")
    assert (tmp_path / "a").read_bytes() == data[::-1]


def test_write_file_syncs_the_file_and_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_file(tmp_path / "a", b"x", mode=0o644, what="test file")
    assert synced == ["file", "dir"]
    synced.clear()
    write_file(tmp_path / "a", b"y", mode=0o644, overwrite=True, what="test file")
    assert synced == ["file", "dir"]
    synced.clear()
    fsync_path(tmp_path / "a")
    assert synced == ["file"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_failed_directory_sync_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overwrite: bool
) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    p = tmp_path / "k.pem"
    with pytest.raises(FileError, match=rf"^{p}: cannot write the key: Input/output error$"):
        write_file(p, b"x", mode=0o600, overwrite=overwrite, what="key")
    # a new file is removed; a replacement has already happened and stays
    assert [q.name for q in tmp_path.iterdir()] == (["k.pem"] if overwrite else [])


def test_relative_paths_write_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_file("rel", b"1", mode=0o644, what="test file")
    write_file("rel", b"2", mode=0o644, overwrite=True, what="test file")
    assert read_capped("rel", limit=1, what="test file") == b"2"
    assert sorted(os.listdir(tmp_path)) == ["rel"]


# -- loads_json --------------------------------------------------------------------------


def _loads(text: str | bytes, **caps: int) -> Any:
    return loads_json(text, what="doc", **{"max_size": 1000, "max_depth": 4, **caps})


def test_accepts_plain_json() -> None:
    text = '{"a": [1, -2, "三", true, false, null, {"b": {}}], "c": "\\u00e9\\ud83d\\ude00"}'
    want = {"a": [1, -2, "三", True, False, None, {"b": {}}], "c": "é😀"}
    assert _loads(text) == want
    assert _loads(text.encode()) == want
    assert _loads(bytearray(text.encode())) == want
    assert _loads(" 7 ") == 7 and _loads('"x"') == "x"


REJECTED = [
    # (input, error class, exact message)
    ('{"a": 1, "a": 2}', MalformedError, "doc: duplicate JSON key 'a'"),
    ('{"a": 1, "\\u0061": 2}', MalformedError, "doc: duplicate JSON key 'a'"),
    ('{"x": {"k": 1, "k": 1}}', MalformedError, "doc: duplicate JSON key 'k'"),
    ("1.0", MalformedError, "doc: numbers must be integers, not '1.0'"),
    ("[1e5]", MalformedError, "doc: numbers must be integers, not '1e5'"),
    ("-0.5", MalformedError, "doc: numbers must be integers, not '-0.5'"),
    ("NaN", MalformedError, "doc: NaN is not allowed in JSON"),
    ('{"x": Infinity}', MalformedError, "doc: Infinity is not allowed in JSON"),
    ("[-Infinity]", MalformedError, "doc: -Infinity is not allowed in JSON"),
    ("1" * 31, MalformedError, "doc: an integer has more than 30 digits"),
    ("-" + "9" * 31, MalformedError, "doc: an integer has more than 30 digits"),
    ("[[[[[]]]]]", TooLargeError, "doc: JSON is nested deeper than 4 levels"),
    ('{"a": {"b": {"c": {"d": {}}}}}', TooLargeError, "doc: JSON is nested deeper than 4 levels"),
    ("[" * 100_000, TooLargeError, "doc: 100000 characters is over the 1000-byte limit"),
    ('"\\ud800"', MalformedError, "doc: a string holds an unpaired surrogate escape"),
    ('{"\\udfff": 1}', MalformedError, "doc: a string holds an unpaired surrogate escape"),
    ('"\ud800"', MalformedError, "doc: the text holds an unpaired surrogate"),
    (b"\xff1", MalformedError, "doc: not valid UTF-8 (byte offset 0)"),
    (b'"\xed\xa0\x80"', MalformedError, "doc: not valid UTF-8 (byte offset 1)"),  # encoded surrogate
    ('"a"'.encode("utf-16"), MalformedError, "doc: not valid UTF-8 (byte offset 0)"),
    ("\ufeff{}", MalformedError, "doc: not valid JSON (Unexpected UTF-8 BOM (decode using utf-8-sig) at"),
    ("", MalformedError, "doc: not valid JSON (Expecting value at line 1, column 1)"),
    ("{} {}", MalformedError, "doc: not valid JSON (Extra data at line 1, column 4)"),
    ("[1,]", MalformedError, "doc: not valid JSON"),
    ("[01]", MalformedError, "doc: not valid JSON"),
    ("'a'", MalformedError, "doc: not valid JSON"),
    ('"\\x41"', MalformedError, "doc: not valid JSON (Invalid \\escape at line 1, column 2)"),
    ('"tab\tinside"', MalformedError, "doc: not valid JSON (Invalid control character"),
    ("x" * 1001, TooLargeError, "doc: 1001 characters is over the 1000-byte limit"),
    ('"' + "é" * 500 + '"', TooLargeError, "doc: 1002 bytes is over the 1000-byte limit"),
    (b" " * 1001, TooLargeError, "doc: 1001 bytes is over the 1000-byte limit"),
    (None, MalformedError, "doc: expected JSON text, not NoneType"),
    ({"a": 1}, MalformedError, "doc: expected JSON text, not dict"),
]


@pytest.mark.parametrize(("data", "error", "message"), REJECTED)
def test_rejects(data: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as e:
        _loads(data)
    assert type(e.value) is error
    assert str(e.value).startswith(message), str(e.value)


def test_caps_are_inclusive() -> None:
    assert _loads("[[[[]]]]") == [[[[]]]]
    assert _loads('{"a": {"b": {"c": [1]}}}') == {"a": {"b": {"c": [1]}}}
    assert _loads("9" * 30) == int("9" * 30)
    assert _loads("-" + "9" * 30) == -int("9" * 30)
    assert _loads("5" * 5, max_int_digits=5) == 55555
    assert _loads(" " * 999 + "1") == 1
    assert _loads('"' + "é" * 499 + '"') == "é" * 499  # 1000 bytes of UTF-8
    assert _loads("[]", max_depth=1) == [] and _loads("1", max_depth=0) == 1
    with pytest.raises(TooLargeError, match="nested deeper than 0 levels"):
        _loads("[]", max_depth=0)


def test_very_deep_input_is_a_too_large_error_not_a_recursion_error() -> None:
    deep = "[" * 50_000 + "]" * 50_000  # deeper than the parser's recursion allows
    with pytest.raises(TooLargeError, match=r"^doc: JSON is nested deeper than 8 levels$"):
        loads_json(deep, what="doc", max_size=len(deep), max_depth=8)


# -- fuzzing: only the project's errors, and the same values json itself reads --------

_scalars = st.none() | st.booleans() | st.integers(min_value=-(10**30) + 1, max_value=10**30 - 1) | st.text()
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


def _depth(v: Any) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(c) for c in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(c) for c in v.values()), default=0)
    return 0


def _outcome(data: str | bytes, **caps: int) -> Any:
    try:
        return ("ok", loads_json(data, what="fuzz", **{"max_size": 4096, "max_depth": 6, **caps}))
    except LedgerError as e:
        assert isinstance(e, MalformedError), repr(e)
        assert str(e).startswith("fuzz: "), str(e)
        return ("error", type(e))


@settings(max_examples=300, deadline=None)
@given(_values, st.booleans())
def test_valid_json_round_trips(value: Any, as_bytes: bool) -> None:
    text = json.dumps(value, ensure_ascii=as_bytes)
    data: str | bytes = text.encode() if as_bytes else text
    want = ("ok", value) if _depth(value) <= 6 else ("error", TooLargeError)
    assert _outcome(data, max_size=1 << 20) == want


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _outcome(data)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]",:0123456789-+.eE tfnrulasNIiy\\u\ud800\x00\n', max_size=200))
def test_json_like_text(text: str) -> None:
    kind, result = _outcome(text)
    if kind == "ok":  # whatever is accepted is exactly what the standard parser reads
        assert result == json.loads(text)
        assert not isinstance(result, float)


@settings(max_examples=200, deadline=None)
@given(_values, st.data())
def test_truncated_and_flipped(value: Any, data: st.DataObject) -> None:
    raw = json.dumps(value, ensure_ascii=False).encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    _outcome(raw[:cut])
    if raw:
        pos = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        flipped = bytearray(raw)
        flipped[pos] ^= data.draw(st.integers(min_value=1, max_value=255))
        _outcome(bytes(flipped))


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_crash_mid_write_leaves_no_partial_file(tmp_path: Path, overwrite: bool) -> None:
    # The process dies half-way through writing (a full tile of a static copy, say):
    # nothing partial may stand at the path, so the write can be done again.
    p = tmp_path / "tile-0-000"
    child = (
        "import os, sys\n"
        "from ledger.files import write_file\n"
        "real = os.write\n"
        "def die(fd, data):\n"
        "    real(fd, bytes(data[:100]))\n"
        "    os._exit(9)\n"
        "os.write = die\n"
        f"write_file(sys.argv[1], bytes(8192), mode=0o644, overwrite={overwrite}, what='tile')\n"
    )
    done = subprocess.run([sys.executable, "-c", child, str(p)], check=False)
    assert done.returncode == 9
    assert not p.exists()
    write_file(p, b"x" * 8192, mode=0o644, overwrite=overwrite, what="tile")
    assert p.read_bytes() == b"x" * 8192
