"""Tests for glideinlab.glidein.stage (signed staging areas) and the standard validation scripts."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from glideinlab.defaults import glidein as D
from glideinlab.glidein import stage as S

FILES = {
    "check_a.sh": b"#!/bin/sh\necho a\n",
    "data.txt": b"payload\n",
    "README": b"no extension\n",
    "archive.tar.gz": b"\x1f\x8b binary \x00\xff",
}
CONSTANTS = {"GLIDEIN_Site": "SiteA", "GLIDECLIENT_Start": 'stringListMember("x", "x,y")', "EMPTY": ""}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.mark.parametrize(
    "logical, digest, staged",
    [
        ("check_disk.sh", "3f2a9c0d1e2b4a5c" + "0" * 48, "check_disk.3f2a9c0d1e2b4a5c.sh"),
        ("README", "ab" * 32, "README." + "ab" * 8),
        ("archive.tar.gz", "cd" * 32, "archive.tar." + "cd" * 8 + ".gz"),
        ("description.cfg", "12" * 32, "description." + "12" * 8 + ".cfg"),
    ],
)
def test_staged_name(logical, digest, staged):
    assert S.staged_name(logical, digest) == staged


def test_write_stage_layout(tmp_path):
    ref = S.write_stage(tmp_path, FILES, executable={"check_a.sh"}, constants=CONSTANTS)
    signature_name, = [p.name for p in tmp_path.iterdir() if p.name.startswith("signature.")]
    signature = (tmp_path / signature_name).read_bytes()
    assert ref.sign == sha(signature)
    assert re.fullmatch(r"description\.[0-9a-f]{16}\.cfg", ref.descript)

    # the signature lists every file with its real hash, the description last (sha256sum -c format)
    entries = [line.split("  ") for line in signature.decode().splitlines()]
    assert entries[-1][1] == ref.descript
    for digest, name in entries:
        assert sha((tmp_path / name).read_bytes()) == digest
        assert f".{digest[:16]}" in name  # content-addressed, the description included
    signed = {name for _, name in entries}
    assert signed | {signature_name} == {p.name for p in tmp_path.iterdir()}

    described = dict(line.split(" ", 1) for line in lines(tmp_path / ref.descript))
    assert set(described) == {"signature", "file_list", "consts_file"}
    assert described["signature"] == signature_name
    assert lines(tmp_path / described["file_list"]) == [
        "check_a.sh exec", "data.txt regular", "README regular", "archive.tar.gz regular"]
    assert lines(tmp_path / described["consts_file"]) == [
        "GLIDEIN_Site SiteA", 'GLIDECLIENT_Start stringListMember("x", "x,y")', "EMPTY "]
    for logical, content in FILES.items():
        assert (tmp_path / S.staged_name(logical, sha(content))).read_bytes() == content


def test_write_stage_is_idempotent_and_content_addressed(tmp_path):
    first = S.write_stage(tmp_path, FILES, executable={"check_a.sh"}, constants=CONSTANTS)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert S.write_stage(tmp_path, FILES, executable={"check_a.sh"}, constants=CONSTANTS) == first
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    changed = S.write_stage(tmp_path, {**FILES, "data.txt": b"new payload\n"}, executable={"check_a.sh"},
                            constants=CONSTANTS)
    assert changed.descript != first.descript and changed.sign != first.sign
    # the old stage is untouched: a glidein holding the old -sign still verifies
    for name, content in before.items():
        assert (tmp_path / name).read_bytes() == content
    assert S.referenced_files(tmp_path, first) & S.referenced_files(tmp_path, changed) >= {
        S.staged_name("check_a.sh", sha(FILES["check_a.sh"]))}


@pytest.mark.parametrize(
    "change",
    [
        {"executable": {"data.txt"}},
        {"constants": {"GLIDEIN_Site": "SiteB"}},
        {"files": {"data.txt": FILES["data.txt"], "check_a.sh": FILES["check_a.sh"]}},  # order = run order
    ],
)
def test_any_change_gives_a_new_trust_root(tmp_path, change):
    base = dict(files=FILES, executable={"check_a.sh"}, constants=CONSTANTS)
    original = S.write_stage(tmp_path, base["files"], executable=base["executable"], constants=base["constants"])
    merged = {**base, **change}
    other = S.write_stage(tmp_path, merged["files"], executable=merged["executable"] & set(merged["files"]),
                          constants=merged["constants"])
    assert other.sign != original.sign


def test_description_is_placed_last(tmp_path, monkeypatch):
    placed: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(S.os, "replace", lambda src, dst: (placed.append(Path(dst).name), real_replace(src, dst)))
    ref = S.write_stage(tmp_path, FILES, executable={"check_a.sh"}, constants=CONSTANTS)
    assert placed[-1] == ref.descript
    assert placed[-2].startswith("signature.")
    assert len(placed) == len(FILES) + 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    "files, executable, constants, message",
    [
        ({"a/b.sh": b""}, (), {}, "file name"),
        ({"has space": b""}, (), {}, "file name"),
        ({".hidden": b""}, (), {}, "file name"),
        ({"trailing.": b""}, (), {}, "file name"),
        ({"constants.cfg": b""}, (), {}, "reserved"),
        ({"a.sh": "text"}, (), {}, "must be bytes"),
        ({"a.sh": b""}, ("b.sh",), {}, "not staged: b.sh"),
        ({"a.sh": b""}, (), {"BAD-KEY": "x"}, "constant name"),
        ({"a.sh": b""}, (), {"KEY": "two\nlines"}, "one-line"),
        ({"a.sh": b""}, (), {"KEY": 5}, "one-line"),
    ],
)
def test_write_stage_rejects(tmp_path, files, executable, constants, message):
    with pytest.raises(S.StageError, match=message):
        S.write_stage(tmp_path, files, executable=executable, constants=constants)
    assert list(tmp_path.iterdir()) == []


def test_remove_unreferenced(tmp_path):
    old = S.write_stage(tmp_path, {"a.sh": b"old\n"}, executable={"a.sh"})
    old_files = S.referenced_files(tmp_path, old)
    current = S.write_stage(tmp_path, {"a.sh": b"new\n"}, executable={"a.sh"})
    current_files = S.referenced_files(tmp_path, current)
    (tmp_path / "index.html").write_text("not ours")
    (tmp_path / ".tmp-crashed").write_text("left by a crash")
    (tmp_path / "entry_ce").mkdir()
    now = 1_000_000.0
    for path in tmp_path.iterdir():
        os.utime(path, (now - 3600, now - 3600))

    assert S.remove_unreferenced(tmp_path, [current], max_age_seconds=7200, now=now) == []
    removed = S.remove_unreferenced(tmp_path, [current], max_age_seconds=1800, now=now)
    shared = old_files & current_files  # e.g. an identical empty constants file
    assert set(removed) == (old_files - shared) | {".tmp-crashed"}
    assert {p.name for p in tmp_path.iterdir()} == current_files | {"index.html", "entry_ce"}


def test_cleanup_keeps_every_stage_in_keep(tmp_path):
    first = S.write_stage(tmp_path, {"a.sh": b"1\n"})
    second = S.write_stage(tmp_path, {"a.sh": b"2\n"})
    now = 2_000_000.0
    for path in tmp_path.iterdir():
        os.utime(path, (now - 10**6, now - 10**6))
    assert S.remove_unreferenced(tmp_path, [first, second], max_age_seconds=60, now=now) == []


def test_standard_validation_scripts():
    scripts = S.standard_validation_scripts()
    assert {"check_condor.sh", "check_disk.sh"} <= set(scripts)
    for name, content in scripts.items():
        assert content.startswith(b"#!/bin/sh\n"), name
        assert os.access(S.STANDARD_FILES_DIR / name, os.X_OK), name
    assert S.STARTUP_SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")


def test_cleanup_age_default_is_a_week():
    assert D.STAGE["unreferenced_max_age"].default == 7 * 24 * 60


# ---- the standard validation scripts, run for real ---------------------------------------------------------

def run_script(name: str, config: Path, env_path: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(S.STANDARD_FILES_DIR / name), str(config)], capture_output=True, text=True,
                          env={"PATH": env_path}, timeout=30)


@pytest.mark.parametrize(
    "min_mb, passes, message",
    [
        ("", True, "GLIDEIN_MinDiskMBs 100"),
        ("1", True, "GLIDEIN_MinDiskMBs 1"),
        ("999999999", False, "GLIDEIN_MinDiskMBs asks for 999999999 MB"),
        ("lots", True, "GLIDEIN_MinDiskMBs 100"),  # bad value: warned about, default used
    ],
)
def test_check_disk(tmp_path, min_mb, passes, message):
    config = tmp_path / "glidein_config"
    # a later line overrides an earlier one, as for every glidein_config reader
    overrides = f"GLIDEIN_MinDiskMBs 999999999\nGLIDEIN_MinDiskMBs {min_mb}\n" if min_mb else ""
    config.write_text(f"GLIDEIN_WORK_DIR {tmp_path}\n{overrides}")
    result = run_script("check_disk.sh", config, "/usr/bin:/bin")
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
    assert message in result.stdout
    assert len(result.stdout.splitlines()) == 1


def test_check_disk_default_matches_the_knob():
    text = (S.STANDARD_FILES_DIR / "check_disk.sh").read_text()
    assert set(re.findall(r"min_mb=(\d+)", text)) == {str(D.GLIDEIN["GLIDEIN_MinDiskMBs"].default)}


def fake_condor(bin_dir: Path, *, daemons_work: bool, version_line: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    for daemon in ("condor_master", "condor_startd"):
        (bin_dir / daemon).write_text(f"#!/bin/sh\n[ \"$1\" = -version ] && exit {0 if daemons_work else 1}\n")
    (bin_dir / "condor_version").write_text(f"#!/bin/sh\necho '{version_line}'\necho '$CondorPlatform: x $'\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)


@pytest.mark.parametrize(
    "setup, passes, message",
    [
        ("ok", True, "HTCondor 23.9.6"),
        ("no condor", False, "condor_master not found"),
        ("broken daemons", False, "'condor_master -version' failed"),
        ("odd version", False, "no $CondorVersion line"),
    ],
)
def test_check_condor(tmp_path, setup, passes, message):
    bin_dir = tmp_path / "bin"
    if setup != "no condor":
        fake_condor(bin_dir, daemons_work=setup != "broken daemons",
                    version_line="something else" if setup == "odd version" else
                    "$CondorVersion: 23.9.6 2024-07-24 BuildID: Debian-23.9.6 $")
    config = tmp_path / "glidein_config"
    config.write_text("GLIDEIN_UUID x\n")
    result = run_script("check_condor.sh", config, f"{bin_dir}:/usr/bin:/bin")
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
    assert message in result.stdout and len(result.stdout.splitlines()) == 1
    expected = "GLIDEIN_UUID x\nCONDOR_VERSION 23.9.6\n" if passes else "GLIDEIN_UUID x\n"
    assert config.read_text() == expected
