#!/usr/bin/env bash
# The seeds' hello-user workflow, step by step:
#   envsubst → mesh-1.yaml → --print-defaults → mesh-2.yaml → + patch.yaml → mesh-3.yaml → apply
# Generated files go to $WORK (default ./target/hello-user). Pass --debug for a debug-mode mesh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
VEIL=${VEIL:-veil}
MODE=production
[[ "${1:-}" == "--debug" ]] && MODE=debug

export APP_IMAGE_REPO=${APP_IMAGE_REPO:-127.0.0.1:5000/veil}
# a random namespace by default, so that two runs never collide on one CAS
export APP_NAMESPACE=${APP_NAMESPACE:-hello-user-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')}
WORK=${WORK:-target/hello-user}
mkdir -p "$WORK"

# 1. the service manifest: validated, its description recorded (the image build needs --dry-run
#    dropped and a registry at $APP_IMAGE_REPO)
sed "s#127.0.0.1:5000/veil#${APP_IMAGE_REPO}#" "$here/service.yaml" > "$WORK/service.yaml"
cp "$here/print_env.py" "$WORK/"
"$VEIL" apply -f "$WORK/service.yaml" --dry-run --mode "$MODE" -t "$WORK/target"

# 2. the mesh template, with the environment filled in
envsubst '$APP_IMAGE_REPO $APP_NAMESPACE' < "$here/mesh-base.yaml.template" > "$WORK/mesh-1.yaml"

# 3. every variable the services declare, with defaults or `null` where one is required
"$VEIL" apply -f "$WORK/mesh-1.yaml" --print-defaults --file "$WORK/mesh-2.yaml"

# 4. the patch's values win over the emitted defaults
cat "$WORK/mesh-2.yaml" "$here/patch.yaml" > "$WORK/mesh-3.yaml"

# 5. what applying the mesh would do
"$VEIL" apply -f "$WORK/mesh-3.yaml" --dry-run --mode "$MODE" -t "$WORK/target"
"$VEIL" env explain -f "$WORK/mesh-3.yaml" pythonapp
