"""The local runner: `veil up` runs a whole mesh on this machine.

    runner.py   the `Runner` protocol (a network per mesh, containers with labels) and its types
    podman.py   the real runner: podman, the image's launcher as entrypoint, `--init`
    fake.py     an in-memory runner for unit tests of the use case
    cas.py      a CAS of this machine's own, started when the mesh names none that answers
    registry.py a registry of this machine's own, started when the images' one is not running
    up.py       the use case: apply the mesh (`veil.mesh.apply_mesh`), then run every service
                behind its launcher, health-gated; `down`, `status`

State lives in podman (labels on the containers and the network) and under Veil's home
(`$VEIL_HOME/local/`: the local CAS's keys and database, the local registry's storage).
"""
