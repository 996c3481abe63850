#!/usr/bin/env bash
# Mutation testing of the security-critical modules with cosmic-ray (pip install 'veil[mutation]').
# Each module is mutated one change at a time and its fast tests run against every mutant; a
# mutant that no test notices ("survived") is a check whose removal nothing catches. Runs in a
# copy of the repository (cosmic-ray edits the files it mutates), so the checkout is never
# touched. Not part of CI: about 3 s per mutant on a quiet machine, hundreds per module.
# Explained survivors and the scores: docs/testing.md.
#
#   scripts/mutation.sh                    every module below
#   scripts/mutation.sh simulation judge   only those (by the names in the table)
#   MUTATION_RERUN=1 scripts/mutation.sh judge
#                                          run again only the survivors of the last report's
#                                          session (after adding tests), keep the rest
#
# A mutant counts as killed only when pytest's summary line reports a failed test. A mutant whose
# tests cannot even be collected or set up ("error"), that runs past the timeout, or whose pytest
# ends without a summary line is no test's catch: those are counted apart from the score, and
# listed, in target/mutation/NAME.txt. Survived = every test that ran passed.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cosmic-ray >/dev/null || { echo "cosmic-ray is not installed (pip install 'veil[mutation]')" >&2; exit 2; }

# name | module | tests that must kill its mutants (fast: no CAS server)
MODULES=(
  "simulation|src/veil/cas/verifiers/simulation.py|tests/cas/test_guards.py"
  "judge|src/veil/cas/verifiers/__init__.py|tests/cas/test_guards.py"
  "attest|src/veil/cas/attest.py|tests/cas/test_guards.py tests/cas/test_provisioning.py tests/cas/test_groupcommit.py"
  "integrity|src/veil/cas/integrity.py|tests/cas/test_guards.py tests/cas/test_integrity_rows.py"
  "substitute|src/veil/cas/substitute.py|tests/cas/test_crypto.py tests/cas/test_policy.py"
  "signing|src/veil/image/signing.py|tests/image/test_signing.py"
  "quote|src/veil/cas/verifiers/quote.py|tests/cas/test_verifiers_quote.py"
  "snp|src/veil/cas/verifiers/snp.py|tests/cas/test_verifiers_snp.py"
  "guard|src/veil/runtime/guard.py|tests/runtime/test_guard.py"
  "measure|src/veil/runtime/measure.py|tests/runtime/test_measure.py tests/runtime/test_measure_contract.py"
  "files|src/veil/runtime/files.py|tests/runtime/test_files.py"
  "launcher|src/veil/runtime/launcher.py|tests/runtime/test_launcher.py tests/runtime/test_launcher_main.py tests/runtime/test_tsm.py tests/runtime/test_guard.py tests/runtime/test_files.py"
)

# Mutants that only multiply the work: of the eleven replacements of a binary operator two are
# kept (+ <-> -, and | or & -> +/-), of a comparison the boundary and the negation.
EXCLUDE='[
  "core/ReplaceBinaryOperator_\\w+_(Pow|RShift|LShift|FloorDiv|Mod|BitXor|BitAnd|Div|Mul|BitOr)$",
  "core/ReplaceComparisonOperator_(Eq|NotEq)_(Lt|LtE|Gt|GtE|Is|IsNot)$",
  "core/ReplaceComparisonOperator_(Lt|LtE|Gt|GtE)_(Is|IsNot|Eq|NotEq)$",
  "core/ReplaceComparisonOperator_(Lt_Gt|Gt_Lt|LtE_GtE|GtE_LtE)$"
]'

here=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/veil-mutation-XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r src tests scripts pyproject.toml "$work/"  # scripts: the test registry's config
out="${MUTATION_REPORT:-$here/target/mutation}"
mkdir -p "$out"
cd "$work"

# The verdict on one mutant, from pytest's summary line rather than its exit code alone
# (`verdict.py PYTEST-ARGS...`: runs pytest, prints its output and a last line
# "veil-mutation-verdict: WHAT", exits 0 only for "survived"), and the count of a session's
# verdicts (`verdict.py --report DB`).
cat >"$work/verdict.py" <<'PY'
import re
import sqlite3
import subprocess
import sys

SUMMARY = re.compile(r"^=*\s*((?:\d+ [a-z]+(?:, )?)+) in [\d.]+s\b.*$")
MARK = "veil-mutation-verdict: "


def judge(output, exit_code):
    if output.strip() == "timeout":  # cosmic-ray stopped the tests
        return "timeout"
    if MARK in output:
        return output.rsplit(MARK, 1)[1].split()[0]
    lines = [m.group(1) for m in map(SUMMARY.match, output.splitlines()) if m]
    if not lines:
        return "no-summary"  # pytest died or exited in the middle
    counts = {}
    for part in lines[-1].split(", "):
        n, what = part.split(" ", 1)
        counts[what.rstrip("s") if what != "passed" else what] = int(n)
    if "Failed: Timeout" in output:
        return "timeout"
    if counts.get("failed"):
        return "killed"
    if counts.get("error"):
        return "error"  # collection or fixture setup: no test noticed anything
    if counts.get("passed"):
        return "survived" if exit_code in (0, None) else "bad-exit"
    return "no-summary"


def report(db):
    rows = sqlite3.connect(db).execute(
        "SELECT r.test_outcome, r.output, s.start_pos_row, s.operator_name FROM work_results r "
        "JOIN mutation_specs s USING (job_id) WHERE r.worker_outcome != 'SKIPPED' "
        "ORDER BY s.start_pos_row")
    by = {}
    for outcome, output, row, op in rows:
        if outcome == "INCOMPETENT":
            what = "incompetent"
        else:
            what = judge(output or "", 0 if outcome == "SURVIVED" else None)
            if what == "survived" and outcome != "SURVIVED":
                what = "bad-exit"  # every test passed, but pytest's exit code was not 0
        by.setdefault(what, []).append(f"line {row}: {op.split('/')[-1]}")
    killed, survived = len(by.get("killed", [])), len(by.get("survived", []))
    judged = killed + survived
    print(f"killed by a test: {killed} / {judged} judged ({100 * killed / max(judged, 1):.0f}%), "
          f"survived: {survived}")
    others = {k: v for k, v in by.items() if k not in ("killed", "survived")}
    print("not judged by a test: " + (", ".join(f"{k} {len(v)}" for k, v in others.items())
                                      or "none"))
    for what, items in sorted(others.items()):
        for item in items:
            print(f"  {what}: {item}")


if sys.argv[1:2] == ["--report"]:
    report(sys.argv[2])
    sys.exit(0)
proc = subprocess.run([sys.executable, "-m", "pytest", *sys.argv[1:]], stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT, text=True, errors="replace")
verdict = judge(proc.stdout, proc.returncode)
sys.stdout.write(proc.stdout)
print(f"\n{MARK}{verdict} (pytest exit code {proc.returncode})")
sys.exit(0 if verdict == "survived" else 1)
PY
export PYTHONPATH="$work/src"
# pytest's plugins (hypothesis, schemathesis) took most of each run's start
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1

for entry in "${MODULES[@]}"; do
  IFS="|" read -r name module tests <<<"$entry"
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  cat >"$name.toml" <<TOML
[cosmic-ray]
module-path = "$module"
timeout = 120.0
excluded-modules = []
test-command = "python3 $work/verdict.py -x -q -p no:cacheprovider -p pytest_timeout $tests"

[cosmic-ray.distributor]
name = "local"

[cosmic-ray.filters.operators-filter]
exclude-operators = $EXCLUDE
TOML
  echo "== $name ($module) $(date -u +%H:%M:%S)"
  db="$out/$name.sqlite"
  if [ "${MUTATION_RERUN:-}" = 1 ] && [ -f "$db" ]; then
    python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("DELETE FROM work_results WHERE test_outcome = ?", ("SURVIVED",)); c.commit()' "$db"
  else
    rm -f "$db"
    cosmic-ray init "$name.toml" "$db" >/dev/null
    cr-filter-operators "$db" "$name.toml"
  fi
  cosmic-ray baseline "$name.toml" >/dev/null || { echo "   the tests fail without mutants" >&2; exit 1; }
  cosmic-ray exec "$name.toml" "$db"
  cr-report "$db" --show-pending >"$out/$name.txt"
  python3 "$work/verdict.py" --report "$db" | tee -a "$out/$name.txt" | grep -v "^  "
done
echo "reports (survivors listed with their diff): $out/"
