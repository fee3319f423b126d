#!/usr/bin/env python3
"""A stand-in for the few kubectl calls k8s/spinkube/scripts/create-secrets.sh makes, backed by
JSON files under $FAKE_KUBE_DIR/<namespace>/<kind>/<name>.json (tests/deploy/test_create_secrets.py).

    kubectl apply -f -                                    (one JSON or YAML object on stdin)
    kubectl -n NS get KIND NAME [-o jsonpath={.data.KEY}]
    kubectl -n NS wait --for=create KIND/NAME [--timeout=...]
Anything else exits 3, so a new kubectl call in the script fails the test instead of passing.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

KINDS = {"secret": "Secret", "secrets": "Secret", "configmap": "ConfigMap", "configmaps": "ConfigMap",
         "namespace": "Namespace", "ns": "Namespace"}


def path(ns: str, kind: str, name: str) -> Path:
    return Path(os.environ["FAKE_KUBE_DIR"]) / (ns if kind != "Namespace" else "_cluster") / kind / f"{name}.json"


def main(argv: list[str]) -> int:
    ns = "default"
    args: list[str] = []
    it = iter(argv)
    for a in it:
        if a in ("-n", "--namespace"):
            ns = next(it)
        else:
            args.append(a)
    with open(Path(os.environ["FAKE_KUBE_DIR"]) / "calls.log", "a") as log:
        log.write(" ".join(["kubectl", "-n", ns] + args) + "\n")
    if args[:3] == ["apply", "-f", "-"] and len(args) == 3:
        obj = yaml.safe_load(sys.stdin.read())
        kind, md = obj["kind"], obj["metadata"]
        p = path(md.get("namespace", ns), kind, md["name"])
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(obj, indent=1))
        return 0
    if args and args[0] == "get" and len(args) in (3, 5):
        kind = KINDS.get(args[1].lower())
        if not kind:
            return 3
        p = path(ns, kind, args[2])
        if not p.exists():
            print(f'Error from server (NotFound): {args[1]} "{args[2]}" not found', file=sys.stderr)
            return 1
        if len(args) == 5:
            if args[3] != "-o" or not args[4].startswith("jsonpath={.data.") or not args[4].endswith("}"):
                return 3
            key = args[4][len("jsonpath={.data."):-1]
            sys.stdout.write((json.loads(p.read_text()).get("data") or {}).get(key, ""))
        return 0
    if args and args[0] == "wait" and len(args) >= 3 and args[1] == "--for=create":
        kind, _, name = args[2].partition("/")
        return 0 if path(ns, KINDS[kind.lower()], name).exists() else 1
    print(f"fake kubectl: unsupported call {argv}", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
