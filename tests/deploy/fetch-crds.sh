#!/usr/bin/env bash
# Fetch the upstream CRDs the validator needs, at the commits named in shared/crds/SOURCES.txt,
# into DIR. For CI runners that have no shared/ folder beside the repository (GitHub Actions);
# locally and in the project's own CI, validate.sh reads ../shared/crds instead.
#   tests/deploy/fetch-crds.sh DIR
set -euo pipefail
out=${1:?target directory}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fetch() { # fetch OWNER/REPO COMMIT FILE...
  local repo=$1 commit=$2; shift 2
  local dir="$tmp/${repo//\//_}"
  git clone --quiet --filter=blob:none --no-checkout "https://github.com/$repo.git" "$dir"
  local f
  for f in "$@"; do
    git -C "$dir" show "$commit:config/crd/bases/$f" > "$out/$f"
  done
}
fetch spinframework/spin-operator 943f5b1 core.spinkube.dev_spinapps.yaml core.spinkube.dev_spinappexecutors.yaml
fetch kedacore/keda 8b4f083ca keda.sh_scaledobjects.yaml keda.sh_triggerauthentications.yaml
fetch kedacore/http-add-on 59b2f6a1 http.keda.sh_httpscaledobjects.yaml http.keda.sh_interceptorroutes.yaml
fetch cloudnative-pg/cloudnative-pg a95a534db postgresql.cnpg.io_clusters.yaml postgresql.cnpg.io_poolers.yaml
ls -l "$out"
