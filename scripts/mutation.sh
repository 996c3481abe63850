#!/usr/bin/env bash
# Mutation testing of the security-critical modules with cosmic-ray (pip install cosmic-ray).
# Each module is mutated one change at a time and its fast tests run against every mutant; a
# mutant that no test notices ("survived") is a check whose removal nothing catches. Runs in a
# copy of the repository (cosmic-ray edits the files it mutates), so the checkout is never
# touched. Not part of CI: minutes per module. Explained survivors: docs/testing.md.
#
#   scripts/mutation.sh                 every module below
#   scripts/mutation.sh simulation judge   only those (by the names in the table)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cosmic-ray >/dev/null || { echo "cosmic-ray is not installed (pip install 'veil[mutation]')" >&2; exit 2; }

# name | module | tests that must kill its mutants (fast: no servers)
MODULES=(
  "simulation|src/veil/cas/verifiers/simulation.py|tests/cas/test_guards.py"
  "judge|src/veil/cas/verifiers/__init__.py|tests/cas/test_guards.py"
  "integrity|src/veil/cas/integrity.py|tests/cas/test_guards.py"
  "nonces|src/veil/cas/attest.py|tests/cas/test_guards.py"
  "substitute|src/veil/cas/substitute.py|tests/cas/test_crypto.py tests/cas/test_policy.py"
  "measure|src/veil/runtime/measure.py|tests/runtime/test_measure.py"
)

work=$(mktemp -d "${TMPDIR:-/tmp}/veil-mutation-XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r src tests pyproject.toml "$work/"
out="${MUTATION_REPORT:-$PWD/target/mutation}"
mkdir -p "$out"
cd "$work"
export PYTHONPATH="$work/src"

for entry in "${MODULES[@]}"; do
  IFS="|" read -r name module tests <<<"$entry"
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  cat >"$name.toml" <<TOML
[cosmic-ray]
module-path = "$module"
timeout = 120.0
excluded-modules = []
test-command = "python3 -m pytest -x -q -p no:cacheprovider $tests"

[cosmic-ray.distributor]
name = "local"
TOML
  echo "== $name ($module)"
  cosmic-ray init "$name.toml" "$name.sqlite" >/dev/null
  cosmic-ray baseline "$name.toml" >/dev/null || { echo "   the tests fail without mutants" >&2; exit 1; }
  cosmic-ray exec "$name.toml" "$name.sqlite"
  cr-report "$name.sqlite" --show-pending >"$out/$name.txt"
  tail -n 3 "$out/$name.txt"
done
echo "reports (survivors listed with their diff): $out/"
