#!/usr/bin/env bash
# The seeds' hello-user workflow, for real:
#   build → envsubst → mesh-1.yaml → --print-defaults → mesh-2.yaml → + patch.yaml → mesh-3.yaml
#   → apply (sessions in CAS, Helm chart written and rendered) → the `helm install` to run next
# Needs a registry at $APP_IMAGE_REPO, a Python base image there ($PYTHON_BASE, default
# $APP_IMAGE_REPO/python:bookworm, made by `veil base create python --to ...`) and
# a CAS at $CAS_ADDR whose key this machine knows (`veil cas init --addr` or `veil cas trust`).
# Generated files go to $WORK (default ./target/hello-user). Pass --debug for a debug-mode mesh
# (simulation evidence, for machines without a TEE); DRY_RUN=1 builds, uploads and copies
# nothing (the files are still written).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
VEIL=${VEIL:-veil}
MODE=production
[[ "${1:-}" == "--debug" ]] && MODE=debug
DRY=()
[[ "${DRY_RUN:-0}" == "1" ]] && DRY=(--dry-run)

export APP_IMAGE_REPO=${APP_IMAGE_REPO:-127.0.0.1:5000/veil}
export CAS_ADDR=${CAS_ADDR:-127.0.0.1:8081}
# a random namespace by default, so that two runs never collide on one CAS
export APP_NAMESPACE=${APP_NAMESPACE:-hello-user-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')}
export RELEASE=${RELEASE:-$(echo "$APP_NAMESPACE" | tr 'A-Z_' 'a-z-')}
WORK=${WORK:-target/hello-user}
mkdir -p "$WORK"

# 1. the confidential image: built, measured, pushed; its description recorded
# built on the Python base in the same registry (`veil base create python --to ...`)
PYTHON_BASE=${PYTHON_BASE:-$APP_IMAGE_REPO/python:bookworm}
sed -e "s#127.0.0.1:5000/veil#${APP_IMAGE_REPO}#" -e "s#^  kind: python\$#  kind: python\n  from: ${PYTHON_BASE}#" \
  "$here/service.yaml" > "$WORK/service.yaml"
cp "$here/print_env.py" "$WORK/"
(cd "$WORK" && "$VEIL" apply -f service.yaml ${DRY[@]+"${DRY[@]}"} --mode "$MODE" -t target)

# 2. the mesh template, with the environment filled in
envsubst '$APP_IMAGE_REPO $APP_NAMESPACE $CAS_ADDR' < "$here/mesh-base.yaml.template" \
  > "$WORK/mesh-1.yaml"

# 3. every variable the services declare, with defaults or `null` where one is required
"$VEIL" apply -f "$WORK/mesh-1.yaml" --print-defaults --file "$WORK/mesh-2.yaml"

# 4. the patch's values win over the emitted defaults
cat "$WORK/mesh-2.yaml" "$here/patch.yaml" > "$WORK/mesh-3.yaml"

# 5. apply: every session into CAS in one transaction, the chart in $WORK/target/helm and the
#    objects Helm renders from it in $WORK/target/manifests
"$VEIL" apply -f "$WORK/mesh-3.yaml" ${DRY[@]+"${DRY[@]}"} --mode "$MODE" --release "$RELEASE" \
  -t "$WORK/target" --output yaml
"$VEIL" env explain -f "$WORK/mesh-3.yaml" pythonapp

# 6. what a cluster user runs next (there is no cluster here)
echo
echo "install the mesh with:"
echo "  helm install $RELEASE $WORK/target/helm"
