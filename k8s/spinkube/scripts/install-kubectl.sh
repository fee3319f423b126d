#!/usr/bin/env bash
# Installs the pinned kubectl into DIR, verified against the checksum pinned here AND the one
# Kubernetes publishes next to the binary (both must match), so neither a changed download nor a
# changed pin goes unnoticed. Used by the deploy and rollback workflows instead of a third-party
# action: the kubectl that reads the cluster credentials comes from the Kubernetes release
# itself.
#
#   install-kubectl.sh DIR        (adds DIR to $GITHUB_PATH when run in GitHub Actions)
#
# Updating: change both lines below together, in one reviewed commit; the SHA-256 is that of
# https://dl.k8s.io/release/<version>/bin/linux/amd64/kubectl (its .sha256 file says the same).
set -euo pipefail
KUBECTL_VERSION=v1.33.3
KUBECTL_SHA256=2fcf65c64f352742dc253a25a7c95617c2aba79843d1b74e585c69fe4884afb0

dir=${1:?target directory}
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
base="https://dl.k8s.io/release/$KUBECTL_VERSION/bin/linux/amd64"
curl -fsSL --retry 3 --proto '=https' --tlsv1.2 -o "$tmp/kubectl" "$base/kubectl"
curl -fsSL --retry 3 --proto '=https' --tlsv1.2 -o "$tmp/kubectl.sha256" "$base/kubectl.sha256"
published=$(tr -d ' \n' < "$tmp/kubectl.sha256")
if [ "$published" != "$KUBECTL_SHA256" ]; then
  echo "install-kubectl.sh: the published checksum of $KUBECTL_VERSION ($published) is not the pinned one" >&2
  exit 1
fi
echo "$KUBECTL_SHA256  $tmp/kubectl" | sha256sum --check --strict --quiet
install -m 0755 "$tmp/kubectl" "$dir/kubectl"
"$dir/kubectl" version --client
if [ -n "${GITHUB_PATH:-}" ]; then echo "$dir" >> "$GITHUB_PATH"; fi
