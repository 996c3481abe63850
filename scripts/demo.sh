#!/usr/bin/env bash
# The hello-user example end to end on this machine, with real components only:
# registry → Python base image → CAS → the seeds' mesh workflow (build, --print-defaults, patch,
# apply: sessions into CAS, Helm chart) → attested run → tamper refused.
# Everything it starts is stopped by PID when it ends. State goes to $DEMO_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/setup.sh

DEMO_DIR=${DEMO_DIR:-$root/target/demo}
REGISTRY=127.0.0.1:5000
CAS_ADDR=127.0.0.1:${CAS_PORT:-8081}
export VEIL_HOME=$DEMO_DIR/home VEIL_CONFIG_DIR=$DEMO_DIR/config VEIL_CAS_DIR=$DEMO_DIR/cas
rm -rf "$DEMO_DIR/src" "$DEMO_DIR/cas" "$DEMO_DIR/config" "$DEMO_DIR/home/index"
mkdir -p "$DEMO_DIR/registry" "$DEMO_DIR/src"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
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

step "3. CAS on $CAS_ADDR"
veil cas init --addr "$CAS_ADDR"
CAS_KEY=$(veil cas key)
veil cas serve --listen "$CAS_ADDR" > "$DEMO_DIR/cas.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fsSk "https://$CAS_ADDR/openapi.json" >/dev/null 2>&1 && break; sleep 0.1; done
echo "CAS pid ${pids[-1]}, key $CAS_KEY"

# podman uses the same settings files Veil writes for its own buildah/podman calls (runc,
# cgroupfs, ulimits, overlay storage, the loopback registry marked insecure)
export CONTAINERS_CONF=$VEIL_HOME/containers/containers.conf
export CONTAINERS_STORAGE_CONF=$VEIL_HOME/containers/storage.conf
export CONTAINERS_REGISTRIES_CONF=$VEIL_HOME/containers/registries.conf
WORK=$DEMO_DIR/mesh
NS=demo-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')

step "4. the seeds' workflow, for real: build → envsubst → --print-defaults → patch → apply"
# debug mode: this machine has no TEE, so the launcher attests with simulation evidence
WORK=$WORK APP_NAMESPACE=$NS APP_IMAGE_REPO=$REGISTRY/veil CAS_ADDR=$CAS_ADDR \
  bash examples/hello-user/run.sh --debug
IMAGE=$REGISTRY/veil/python_hello_user:latest

step "5. applying the same mesh again changes nothing in CAS"
veil apply -f "$WORK/mesh-3.yaml" --mode debug -t "$WORK/target" --diff

run() {
  # --pull=always: run what the registry holds now (the measured push), not a same-named
  # image left in local storage
  podman run --rm --init --pull=always --tls-verify=false -e SCONE_CONFIG_ID="$NS/pythonapp/pythonapp" \
    -e SCONE_CAS_ADDR="$CAS_ADDR" -e SCONE_CAS_KEY="$CAS_KEY" "$@"
}
step "6. run it: the launcher attests, CAS provisions API_USER and the generated API_PASSWORD"
run "$IMAGE"

step "7. one changed byte in the program: CAS refuses to configure it"
mkdir -p "$DEMO_DIR/src"
cp "$WORK/service.yaml" "$WORK/print_env.py" "$DEMO_DIR/src/"
echo "#" >> "$DEMO_DIR/src/print_env.py"
sed -i 's#python_hello_user:latest#python_hello_user:tampered#' "$DEMO_DIR/src/service.yaml"
(cd "$DEMO_DIR/src" && veil apply -f service.yaml >/dev/null)
if run "$REGISTRY/veil/python_hello_user:tampered"; then
  echo "demo: the tampered image was NOT refused" >&2; exit 1
fi
echo "(refused, as it must be)"

step "done: stopping what the demo started"
