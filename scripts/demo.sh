#!/usr/bin/env bash
# The hello-user example end to end on this machine, with real components only, the seeds'
# workflow through the product: registry → Python base image → confidential image → mesh
# template → envsubst → --print-defaults → patch → apply → `veil up` (a local CAS, the sessions,
# the attested container) → greeting → tampered image refused by CAS → `veil down`.
# No session or container command is written here by hand (the attacker's step excepted).
# Everything it starts is stopped when it ends. State goes to $DEMO_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/setup.sh

DEMO_DIR=${DEMO_DIR:-$root/target/demo}
REGISTRY=${REGISTRY:-127.0.0.1:5000}
export VEIL_HOME=$DEMO_DIR/home VEIL_CONFIG_DIR=$DEMO_DIR/config
rm -rf "$DEMO_DIR/src" "$DEMO_DIR/config" "$DEMO_DIR/home/index" "$DEMO_DIR/mesh"
mkdir -p "$DEMO_DIR/registry" "$DEMO_DIR/src"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pids=()
cleanup() {
  [ -f "${MESH:-}" ] && { veil down -f "$MESH" --volumes >/dev/null 2>&1 || true; }
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

step "1. OCI registry on $REGISTRY"
if curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1; then
  echo "a registry already answers on $REGISTRY; using it"
else
  sed -e "s#@ADDR@#$REGISTRY#" -e "s#@ROOT@#$DEMO_DIR/registry#" \
    scripts/containers/registry-config.yml.in > "$DEMO_DIR/registry.yml"
  docker-registry serve "$DEMO_DIR/registry.yml" > "$DEMO_DIR/registry.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
  echo "registry pid ${pids[-1]}"
fi

step "2. Python base image (debootstrap, cached in $DEMO_DIR/base-cache)"
veil base create python --to "$REGISTRY/veil/python:bookworm" --cache "$DEMO_DIR/base-cache"

step "3. the seeds' mesh workflow: template → envsubst → --print-defaults → patch → apply --dry-run"
# (DRY_RUN: nothing built or uploaded yet; the mesh names a CAS that is not running, so
# `veil up` below starts one of its own)
WORK=$DEMO_DIR/mesh APP_NAMESPACE=demo-mesh APP_IMAGE_REPO=$REGISTRY/veil CAS_ADDR=127.0.0.1:9 \
  DRY_RUN=1 bash examples/hello-user/run.sh --debug
MESH=$DEMO_DIR/mesh/mesh-3.yaml

step "4. apply the service manifest: build, measure and push the confidential image"
cp examples/hello-user/print_env.py "$DEMO_DIR/src/"
sed "s#127.0.0.1:5000/veil#$REGISTRY/veil#" examples/hello-user/service.yaml > "$DEMO_DIR/src/service.yaml"
if [ "$REGISTRY" != 127.0.0.1:5000 ]; then  # the default base image lives on :5000
  sed -i "s#^  pwd: /python#  from: $REGISTRY/veil/python:bookworm\n  pwd: /python#" "$DEMO_DIR/src/service.yaml"
fi
(cd "$DEMO_DIR/src" && veil apply -f service.yaml)
IMAGE=$REGISTRY/veil/python_hello_user:latest

step "5. veil up: a local CAS, the sessions into it, the service behind its launcher"
veil up -f "$MESH" --mode debug -t "$DEMO_DIR/mesh/target"
veil ps -f "$MESH"

step "5b. veil up again: nothing changed, nothing restarted"
veil up -f "$MESH" --mode debug -t "$DEMO_DIR/mesh/target"

step "6. the greeting: API_USER from the mesh, the checksum of the password CAS generated"
veil logs --mesh "$MESH" pythonapp

step "7. the attacker: one changed byte in the program, the original description kept"
# (the only container-tool commands here are the attacker's own: a copy of the image with
# one byte more in print_env.py, pushed under another tag, still labelled with the
# original's service description — so the session names the original measurement)
export CONTAINERS_CONF=$VEIL_HOME/containers/containers.conf
export CONTAINERS_STORAGE_CONF=$VEIL_HOME/containers/storage.conf
export CONTAINERS_REGISTRIES_CONF=$VEIL_HOME/containers/registries.conf
cid=$(buildah from --pull-never "$IMAGE")
echo "#" >> "$(buildah mount "$cid")/python/print_env.py"
buildah commit -q "$cid" "$REGISTRY/veil/python_hello_user:tampered" >/dev/null
buildah rm "$cid" >/dev/null
buildah push --tls-verify=false "$REGISTRY/veil/python_hello_user:tampered"
sed 's#python_hello_user:latest#python_hello_user:tampered#' "$MESH" > "$DEMO_DIR/mesh/tampered.yaml"
if veil up -f "$DEMO_DIR/mesh/tampered.yaml" --mode debug -t "$DEMO_DIR/mesh/target" --timeout 120; then
  echo "demo: the tampered image was NOT refused" >&2; exit 1
fi
veil logs --mesh "$MESH" pythonapp | grep -q "Hello" && { echo "demo: the tampered program ran" >&2; exit 1; }
echo "(refused by CAS, as it must be: the program never started)"

step "8. veil down"
veil down -f "$MESH"
