"""Process-wide settings of the command line (stsa_bench/core/process.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stsa_bench.core.process import ALLOCATOR_ENV, huge_page_mode, setup_process

FAULTS = """
import resource, torch
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(16 * 2**20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_defaults_are_set_and_a_users_value_is_kept(monkeypatch):
    for key in ALLOCATOR_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GOMP_SPINCOUNT", "infinite")
    setup_process()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1" and os.environ["GOMP_SPINCOUNT"] == "infinite"


@pytest.mark.skipif(huge_page_mode() != "madvise", reason=f"transparent huge pages are '{huge_page_mode()}' here, not 'madvise' (where only the variable turns them on)")
def test_torch_reads_the_huge_page_variable():
    """The variable's name is the one this torch reads: 64 MB tensors, made 20 times, fault far fewer pages with it
    (about 30x fewer here; half is asked, as huge pages can fall back to small ones on a fragmented machine)."""
    faults = {}
    for value in ("0", "1"):
        env = {**os.environ, "THP_MEM_ALLOC_ENABLE": value}
        out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, check=True)
        faults[value] = int(out.stdout.split()[-1])
    assert faults["1"] * 2 < faults["0"], faults
