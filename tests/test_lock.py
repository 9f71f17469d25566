"""The committed locks (requirements/, written by scripts/lock.sh) are the tested set of pyproject.toml's ranges:
every declared package pinned inside its range and hashed, the runtime lock at the dev lock's versions."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from stsa_bench.core.environment import normalise, read_lock

ROOT = Path(__file__).resolve().parents[1]
LOCK, LOCK_DEV = ROOT / "requirements" / "lock.txt", ROOT / "requirements" / "lock-dev.txt"


def declared(extras: tuple[str, ...] = ()) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + [r for e in extras for r in project["optional-dependencies"][e]]]


def lock_problems(requirements: list[Requirement], pins: dict[str, str]) -> list[str]:
    """One line per declared package that the lock leaves out or pins outside its range."""
    out = []
    for req in requirements:
        pinned = pins.get(normalise(req.name))
        if pinned is None:
            out.append(f"{req.name}: not in the lock")
        elif not req.specifier.contains(pinned, prereleases=True):
            out.append(f"{req.name}: lock pins {pinned}, outside {req.specifier}")
    return out


def test_the_locks_pin_every_declared_package_inside_its_range():
    assert lock_problems(declared(("dev", "train")), read_lock(LOCK_DEV)) == []
    assert lock_problems(declared(), read_lock(LOCK)) == []


def test_the_runtime_lock_is_the_dev_locks_versions():
    runtime, dev = read_lock(LOCK), read_lock(LOCK_DEV)
    assert {k: (v, dev.get(k)) for k, v in runtime.items() if dev.get(k) != v} == {}


@pytest.mark.parametrize("lock", [LOCK, LOCK_DEV], ids=["lock", "lock-dev"])
def test_every_pin_is_exact_and_hashed(lock):
    """pip installs a hashed lock in --require-hashes mode: each entry `name==version` followed by its sha256s."""
    entries = re.split(r"\n(?=[A-Za-z0-9])", "\n".join(line for line in lock.read_text().splitlines() if not line.lstrip().startswith("#")).strip())
    assert len(entries) == len(read_lock(lock)) > 50
    unhashed = [e.split()[0] for e in entries if not re.search(r"--hash=sha256:[0-9a-f]{64}", e)]
    assert unhashed == []


def test_a_lock_that_does_not_match_is_named_package_by_package(tmp_path):
    pins = read_lock(LOCK)
    broken = tmp_path / "lock.txt"
    text = LOCK.read_text()
    text = re.sub(r"^av==\S+", "av==17.1.0", text, flags=re.M)
    text = re.sub(r"^scipy==\S+ \\\n(    --hash=\S+( \\)?\n)+", "", text, flags=re.M)
    broken.write_text(text)
    assert "scipy" in pins and "scipy" not in read_lock(broken)
    assert lock_problems(declared(), read_lock(broken)) == ["av: lock pins 17.1.0, outside >=18.0", "scipy: not in the lock"]
