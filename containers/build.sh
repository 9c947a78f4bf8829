#!/usr/bin/env bash
# Build the images compose.yaml runs, from local Debian packages and local wheels:
#   localhost/sched-base:bookworm    containers/base.sh (mmdebstrap + podman import)
#   localhost/sched:dev              Containerfile: the sched wheel and its dependencies
#   localhost/sched-postgres:dev     containers/postgres/Containerfile
#   localhost/sched-rabbitmq:dev     containers/rabbitmq/Containerfile
# The wheelhouse (build/wheelhouse): the sched wheel built from this checkout, and its
# dependencies resolved by pip in the base image itself (its Python decides which
# wheels and markers apply), so the image installs wheels only, with no index.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/containers/podman.conf}
PYTHON=${PYTHON:-python3}

log() { printf '==> %s\n' "$*" >&2; }

containers/base.sh
log "building the wheelhouse (build/wheelhouse)"
# setuptools keeps build/lib between builds: a file deleted or renamed in the tree (a
# migration renumbered on rebase) would stay in the wheel.
rm -rf build/wheelhouse build/lib build/bdist.*
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir build/wheelhouse .
# pip in the container trusts what the host's pip trusts (a host whose TLS is
# intercepted by a proxy has that CA in its bundle).
ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
podman run --rm --volume "$PWD/build/wheelhouse:/wheelhouse" \
  --volume "$ca:/etc/ssl/certs/host-ca.crt:ro" --env PIP_CERT=/etc/ssl/certs/host-ca.crt \
  localhost/sched-base:bookworm \
  sh -ec 'python3 -m venv /tmp/pip && /tmp/pip/bin/pip wheel --quiet --disable-pip-version-check \
          --wheel-dir /wheelhouse /wheelhouse/sched-*.whl'
podman image prune --force >/dev/null  # layers of earlier builds
for spec in "Containerfile sched" "containers/postgres/Containerfile sched-postgres" \
            "containers/rabbitmq/Containerfile sched-rabbitmq"; do
  set -- $spec
  log "building localhost/$2:dev"
  podman build --quiet --file "$1" --tag "localhost/$2:dev" . >/dev/null
done
