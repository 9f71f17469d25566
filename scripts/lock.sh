#!/usr/bin/env bash
# Writes the lock files: every package of the install, transitive ones included, pinned with sha256 hashes, as a
# fresh `pip install -e ".[dev]"` resolves it on Linux x86_64 with Python 3.11 (CI's and the README's platform).
#   requirements/lock-dev.txt  the tested set: runtime, `train` and `dev` extras
#   requirements/lock.txt      the runtime part of it, at the same versions
# Run after changing pyproject.toml's dependencies, or to move the tested set to newer releases; then run .ci/run.
# Needs uv (`pip install uv`). A constraint file in pip's configuration (machines that cap torch at the release on
# their disk) applies here too, so that the lock is what pip installs on them.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-uv}
common=(--python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --quiet
        --custom-compile-command "scripts/lock.sh")
extra=()
for c in ${PIP_CONSTRAINT:-} $(python3 -m pip config list 2>/dev/null | sed -n "s/^[a-z:]*\.constraint='\(.*\)'\$/\1/p"); do
    extra+=(--constraint "$c")
done
"$uv" pip compile pyproject.toml --extra dev --extra train "${common[@]}" "${extra[@]}" -o requirements/lock-dev.txt
"$uv" pip compile pyproject.toml "${common[@]}" --constraint requirements/lock-dev.txt -o requirements/lock.txt
echo "wrote requirements/lock-dev.txt ($(grep -c '^[a-z0-9]' requirements/lock-dev.txt) packages) and requirements/lock.txt ($(grep -c '^[a-z0-9]' requirements/lock.txt))"
