#!/usr/bin/env bash
# Make the local base image `localhost/sched-base:bookworm` from Debian packages alone:
# mmdebstrap builds a Debian 12 root file system (Python, PostgreSQL, RabbitMQ) and
# `podman import` turns it into an image. No container registry is contacted.
#
# The tarball is cached (SCHED_BASE_CACHE, default /var/cache/sched-ci) under a name
# made from the package list, so CI and developers on the same machine build it once
# (about 6 minutes) and import it afterwards (under a minute); the image is not
# imported again while one with the same package list exists.
set -euo pipefail

PACKAGES="python3,python3-venv,postgresql,rabbitmq-server,ca-certificates,netbase,procps"
SUITE=bookworm
IMAGE=localhost/sched-base:$SUITE
CACHE=${SCHED_BASE_CACHE:-/var/cache/sched-ci}
key=$(printf '%s %s' "$SUITE" "$PACKAGES" | sha256sum | cut -c1-12)
tarball=$CACHE/sched-base-$SUITE-$key.tar

log() { printf '==> %s\n' "$*" >&2; }

for tool in mmdebstrap podman; do
  command -v "$tool" >/dev/null || { log "$tool is missing: apt-get install $tool"; exit 69; }
done

if [ "$(podman image inspect --format '{{index .Labels "sched.base"}}' "$IMAGE" 2>/dev/null)" = "$key" ]; then
  log "$IMAGE is up to date ($key)"
  exit 0
fi
if [ ! -s "$tarball" ]; then
  mkdir -p "$CACHE"
  log "building the Debian $SUITE root file system (mmdebstrap): $tarball"
  mmdebstrap --mode=root --variant=apt --include="$PACKAGES" "$SUITE" "$tarball.part"
  mv "$tarball.part" "$tarball"
fi
log "importing $tarball as $IMAGE"
podman import --change "LABEL sched.base=$key" --change 'CMD ["/bin/bash"]' "$tarball" "$IMAGE" >/dev/null
