#!/usr/bin/env python3
"""Checks that the service images and their runtime configuration hold exactly what each
service needs.

    check_images.py CONTEXT_DIR      (CONTEXT_DIR = the --out of images/build.sh)

For each of user, product, order, delivery, web:
- the image context holds exactly spin.toml and marketplace_<svc>.wasm, the .wasm starts with
  the WebAssembly component header, and images/<svc>/Dockerfile copies exactly those two files
  FROM scratch;
- the context's spin.toml has one component, <svc>, whose source is that .wasm, whose settings
  equal the repository spin.toml's (build section aside), with exactly that component's HTTP
  triggers and exactly the application variables it uses, declared as in the repository;
- k8s/spinkube/runtime-config/<svc>.toml defines exactly the key-value labels the component
  lists, on the same Redis servers as runtime-config/production.toml, and each server is a
  Service in the rendered manifests (checked by validate.sh through --rendered).
Prints `N passed, N failed`.
"""
from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "images"))
import service_manifest  # noqa: E402

SERVICES = ["user", "product", "order", "delivery", "web"]
COMPONENT_HEADER = b"\x00asm\x0d\x00\x01\x00"


def check_context(ctx: Path, svc: str, spin: dict) -> list[str]:
    errs: list[str] = []
    wasm = service_manifest.wasm_name(svc)
    files = sorted(p.name for p in ctx.iterdir()) if ctx.is_dir() else []
    if files != sorted(["spin.toml", wasm]):
        errs.append(f"context {ctx} holds {files}, expected exactly spin.toml and {wasm}")
        if "spin.toml" not in files:
            return errs
    if (ctx / wasm).exists() and not (ctx / wasm).read_bytes()[:8] == COMPONENT_HEADER:
        errs.append(f"{wasm} is not a WebAssembly component (wrong header)")
    m = tomllib.loads((ctx / "spin.toml").read_text())
    comps = m.get("component") or {}
    if list(comps) != [svc]:
        errs.append(f"spin.toml components {list(comps)}, expected only {svc!r}")
        return errs
    comp = comps[svc]
    if comp.get("source") != wasm:
        errs.append(f"component source {comp.get('source')!r}, expected {wasm!r}")
    want = {k: v for k, v in spin["component"][svc].items() if k not in ("build", "source")}
    got = {k: v for k, v in comp.items() if k != "source"}
    if got != want:
        errs.append(f"component settings differ from the repository spin.toml: {got} != {want}")
    triggers = (m.get("trigger") or {}).get("http", [])
    want_triggers = [t for t in spin["trigger"]["http"] if t.get("component") == svc]
    if triggers != want_triggers:
        errs.append(f"triggers {triggers} != {want_triggers}")
    used = service_manifest.used_variables(spin["component"][svc])
    declared = m.get("variables") or {}
    if sorted(declared) != sorted(used):
        errs.append(f"variables {sorted(declared)} != used {sorted(used)}")
    for name, decl in declared.items():
        if spin["variables"].get(name) != decl:
            errs.append(f"variable {name!r} declared as {decl}, repository says {spin['variables'].get(name)}")
    return errs


def check_dockerfile(svc: str) -> list[str]:
    path = ROOT / "images" / svc / "Dockerfile"
    if not path.exists():
        return [f"{path} missing"]
    lines = [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.strip().startswith("#")]
    froms = [l for l in lines if l.upper().startswith("FROM ")]
    copies = sorted(l.split()[1] for l in lines if l.upper().startswith("COPY "))
    errs = []
    if froms != ["FROM scratch"]:
        errs.append(f"{path}: expected a single `FROM scratch`, found {froms}")
    if copies != sorted(["spin.toml", service_manifest.wasm_name(svc)]):
        errs.append(f"{path}: copies {copies}, expected spin.toml and {service_manifest.wasm_name(svc)}")
    if any(l.upper().startswith(("RUN ", "ADD ")) for l in lines):
        errs.append(f"{path}: a wasm image has nothing to RUN or ADD")
    return errs


def check_runtime_config(svc: str, spin: dict, production: dict, rendered_services: set[str] | None) -> list[str]:
    labels = spin["component"][svc].get("key_value_stores") or []
    path = ROOT / "k8s" / "spinkube" / "runtime-config" / f"{svc}.toml"
    if not labels:
        return [f"{path} exists but {svc} uses no key-value store"] if path.exists() else []
    if not path.exists():
        return [f"{path} missing: {svc} uses key-value stores {labels}"]
    rc = tomllib.loads(path.read_text()).get("key_value_store") or {}
    errs = []
    if sorted(rc) != sorted(labels):
        errs.append(f"{path}: labels {sorted(rc)} != the component's {sorted(labels)}")
    for label, store in rc.items():
        prod = (production.get("key_value_store") or {}).get(label)
        if not prod:
            errs.append(f"{path}: label {label!r} is not in runtime-config/production.toml")
            continue
        ours = re.sub(r"//:[^@]*@", "//", store.get("url", ""))
        if store.get("type") != prod.get("type") or ours != prod.get("url"):
            errs.append(f"{path}: {label} -> {store} differs from production.toml {prod}")
        if "${REDIS_PASSWORD}" not in store.get("url", ""):
            errs.append(f"{path}: {label} URL carries no ${{REDIS_PASSWORD}}: Redis requires a password")
        host = re.match(r"redis://(?:[^@]*@)?([^:/]+)", store.get("url", ""))
        if rendered_services is not None and host:
            name = host.group(1).split(".")[0]
            if name not in rendered_services:
                errs.append(f"{path}: {label} points at Service {name!r}, which the manifests do not define")
    return errs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("contexts", type=Path)
    ap.add_argument("--rendered", type=Path, help="a rendered overlay, to check the Redis Services exist")
    args = ap.parse_args(argv)
    spin = tomllib.loads((ROOT / "spin.toml").read_text())
    production = tomllib.loads((ROOT / "runtime-config" / "production.toml").read_text())
    services = None
    if args.rendered:
        import yaml
        services = {d["metadata"]["name"] for d in yaml.safe_load_all(args.rendered.read_text())
                    if d and d.get("kind") == "Service"}
    passed = failed = 0
    for svc in SERVICES:
        for what, errs in (("image context", check_context(args.contexts / svc, svc, spin)),
                           ("Dockerfile", check_dockerfile(svc)),
                           ("runtime config", check_runtime_config(svc, spin, production, services))):
            if errs:
                failed += 1
                print(f"FAIL {svc} {what}:\n  " + "\n  ".join(errs))
            else:
                passed += 1
                print(f"ok   {svc} {what}")
    print(f"image checks: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
