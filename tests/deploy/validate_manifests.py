#!/usr/bin/env python3
"""Offline validation of the Kubernetes manifests under k8s/.

    validate_manifests.py [--crds DIR] [--spin-toml FILE] [--k8s-version X.Y.Z] TARGET...

A TARGET is a kustomization directory (rendered with kustomize's Go code, see kustomize.py) or
a YAML file (validated as is: the self-test fixtures). Every document is checked:

1. schema: built-in kinds against the Kubernetes OpenAPI schemas bundled in the
   `kubernetes-validate` package (strict: unknown fields are errors); SpinApp, SpinAppExecutor,
   ScaledObject, TriggerAuthentication, HTTPScaledObject, InterceptorRoute, Cluster and Pooler
   against the openAPIV3Schema of their upstream CRDs (shared/crds), also strict. A kind that
   neither knows is an error. (CEL rules, `x-kubernetes-validations`, are not evaluated.)
2. policy: pinned image tags (no `latest`, no untagged image), no privileged or root pods,
   probes and resource requests/limits on every workload, no secret material in plain values,
   only /api/ paths on Ingresses, autoscaling wired to the Deployment the operator creates,
   PodDisruptionBudgets where more than one replica runs, NetworkPolicies that let only the
   intended callers reach each service, a migration Job per database.
   The storefront's egress is limited to its peers; the outbox relay CronJobs sign as `relay`
   with the relay's own key; no secret reaches a container's command line (`$(VAR)` of a
   secret env var in args, a Redis password flag). With --production: TLS in transit
   (marketplace-transport rediss + sslmode require/verify-full, TLS-only Redis, database
   server certificates from the database CA, migration Jobs verifying it).
3. spin.toml agreement: each SpinApp sets exactly the variables its component uses, every
   `secret = true` variable from a Secret, every variable whose default only works on a laptop
   (`127.0.0.1`, `.spin.internal`), and a runtime-config Secret iff it uses key-value stores.

Each finding is printed as `TARGET: Kind/namespace/name: message`; the exit code is 1 when
there is any.
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import kustomize  # noqa: E402

# ----------------------------------------------------------------------------- expectations
# Which pods may open connections to each service (beyond the ingress controller and, for
# scale-to-zero services, the KEDA HTTP add-on's interceptor). Keys are SpinApp names; values
# are the `core.spinkube.dev/app-name` or `app.kubernetes.io/name` labels of the allowed pods.
INTERNAL_CALLERS = {
    "user": {"web"},
    "product": {"order", "web"},
    "delivery": {"order", "delivery-outbox-relay", "web"},
    "order": {"delivery", "order-outbox-relay", "web"},
    "web": set(),
}
# SpinApps that must have an egress policy, and the only peers (pod name label, port) it may
# name: the storefront handles browsers' input, so it reaches the four services, its own Redis,
# the cluster DNS and (with the KEDA HTTP add-on) the interceptor, nothing else.
EGRESS_ALLOWED = {
    "web": {("user", 80), ("product", 80), ("order", 80), ("delivery", 80), ("redis-web", 6379),
            ("kube-dns", 53), ("interceptor", 8080)},
}
# SpinApps with no readiness route: the storefront depends on no database (a service that is
# down renders an error page in words), so its health route is its readiness too.
HEALTH_ONLY = {"web"}
# The only Ingress path outside /api/: `/`, to the storefront (or the interceptor in front of it).
ROOT_PATH_BACKENDS = {"web", "keda-interceptor"}
# The relay CronJobs sign as `relay` with relay-service-key; no other signing key may reach them.
RELAY_IDENTITY = "relay"
RELAY_SECRET = "relay-service-key"
SIGNING_SECRETS = {"marketplace-jwt", "order-service-key", "delivery-service-key", RELAY_SECRET}
TRANSPORT = {"redis_scheme": {"redis", "rediss"}, "pg_sslmode": {"disable", "require", "verify-full"}}
# Namespaces (by kubernetes.io/metadata.name) whose pods may reach any public service.
EDGE_NAMESPACES = {"ingress-nginx", "keda"}
EXECUTOR = "containerd-shim-spin"
SECRETISH = re.compile(r"(password|passwd|secret|token|signing_key|private|credential|_db_url|db_urls|database_url|replica_urls)", re.I)
CRED_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^@\s/]+@", re.I)
PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")

POD_TEMPLATE_PATHS = {
    "Deployment": ["spec", "template"],
    "StatefulSet": ["spec", "template"],
    "DaemonSet": ["spec", "template"],
    "ReplicaSet": ["spec", "template"],
    "Job": ["spec", "template"],
    "CronJob": ["spec", "jobTemplate", "spec", "template"],
}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}


def dig(obj: Any, *path: str, default: Any = None) -> Any:
    for p in path:
        if not isinstance(obj, dict) or p not in obj:
            return default
        obj = obj[p]
    return obj


def as_int(v: Any, default: int = 0) -> int:
    """Replica counts of a schema-invalid document must not crash the policy checks."""
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def ident(doc: dict) -> str:
    md = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{md.get('namespace', '-')}/{md.get('name', '?')}"


# ----------------------------------------------------------------------------- CRD schemas
def _strict(schema: Any) -> Any:
    """openAPIV3Schema -> JSON Schema with unknown fields forbidden, as the API server's strict
    field validation would (pruning aside), and Kubernetes' extensions honoured."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    s = {k: _strict(v) for k, v in schema.items()}
    if s.pop("x-kubernetes-int-or-string", False):
        s.pop("type", None)
        s["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if s.pop("nullable", False) and "type" in s:
        s["type"] = [s["type"], "null"]
    preserve = s.pop("x-kubernetes-preserve-unknown-fields", False)
    for k in list(s):
        if k.startswith("x-kubernetes-"):
            s.pop(k)
    if s.get("type") == "object" and "properties" in s and "additionalProperties" not in s and not preserve:
        s["additionalProperties"] = False
    return s


def load_crds(crd_dir: Path) -> dict[tuple[str, str], dict]:
    schemas: dict[tuple[str, str], dict] = {}
    for f in sorted(crd_dir.glob("*.yaml")):
        for crd in yaml.safe_load_all(f.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                if not v.get("served", True):
                    continue
                schema = _strict(copy.deepcopy(v["schema"]["openAPIV3Schema"]))
                props = schema.setdefault("properties", {})
                # metadata is validated by the API server's ObjectMeta, not the CRD: keep it open
                # but require a name.
                props["metadata"] = {"type": "object", "required": ["name"]}
                props["apiVersion"] = {"type": "string"}
                props["kind"] = {"type": "string"}
                schemas[(f"{group}/{v['name']}", kind)] = schema
    return schemas


def check_schema(doc: dict, crds: dict, k8s_version: str) -> list[str]:
    import kubernetes_validate as kv

    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in crds:
        v = jsonschema.Draft7Validator(crds[key])
        return [f"CRD schema: {'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                for e in sorted(v.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]
    try:
        kv.validate(doc, k8s_version, strict=True)
    except kv.SchemaNotFoundError:
        return [f"no schema for {key[0]} {key[1]}: neither a Kubernetes {k8s_version} kind nor a CRD in the CRD directory"]
    except kv.ValidationError as e:
        path = "/".join(str(p) for p in e.path) or "(root)"
        return [f"Kubernetes {k8s_version} schema: {path}: {e.message}"]
    return []


# ----------------------------------------------------------------------------- helpers
def pod_spec(doc: dict) -> dict | None:
    path = POD_TEMPLATE_PATHS.get(doc.get("kind"))
    if doc.get("kind") == "Pod":
        return doc.get("spec") or {}
    if not path:
        return None
    return dig(doc, *path, "spec", default={}) or {}


def pod_labels(doc: dict) -> dict:
    if doc.get("kind") == "SpinApp":
        labels = dict(dig(doc, "spec", "podLabels", default={}) or {})
        labels["core.spinkube.dev/app-name"] = doc["metadata"]["name"]
        return labels
    path = POD_TEMPLATE_PATHS.get(doc.get("kind"))
    if not path:
        return {}
    return dict(dig(doc, *path, "metadata", "labels", default={}) or {})


def image_ok(image: str) -> str | None:
    if not isinstance(image, str) or not image:
        return "missing image"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag (means latest): pin a version or digest"
    tag = last.rsplit(":", 1)[1]
    if tag == "latest" or tag.endswith("-latest") or tag in {"main", "master", "stable", "edge"}:
        return f"image {image!r} uses a moving tag {tag!r}: pin a version or digest"
    return None


def resources_ok(res: Any, what: str) -> list[str]:
    out = []
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if not dig(res or {}, kind, r):
                out.append(f"{what}: no resources.{kind}.{r}")
    return out


def walk_strings(obj: Any, path: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk_strings(v, f"{path}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk_strings(v, f"{path}/{i}")
    elif isinstance(obj, str):
        yield path, obj


def selects(selector: dict | None, labels: dict) -> bool:
    if selector is None:
        return False
    ml = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in ml.items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        k, op, vals = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and labels.get(k) in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


# ----------------------------------------------------------------------------- policy
class Policy:
    def __init__(self, docs: list[dict], spin: dict | None, production: bool = False):
        self.docs = docs
        self.spin = spin
        self.production = production
        self.findings: list[str] = []

    def add(self, doc: dict | None, msg: str) -> None:
        self.findings.append(f"{ident(doc) if doc else '(set)'}: {msg}")

    def run(self) -> list[str]:
        per_doc = [self.images, self.security, self.probes_and_resources, self.secrets, self.ingress, self.spinapp,
                   self.command_lines, self.relay]
        for d in self.docs:
            for check in per_doc:
                self._guard(check, d)
        for check in (self.autoscaling, self.pdbs, self.network_policies, self.egress, self.migrations, self.transport):
            self._guard(check)
        return self.findings

    def _guard(self, check, *args) -> None:
        # A malformed document (already reported by the schema check) must not hide the others.
        try:
            check(*args)
        except (AttributeError, TypeError, ValueError, KeyError) as e:
            self.add(args[0] if args else None, f"policy check {check.__name__} could not read it: {e!r}")

    # images ------------------------------------------------------------------
    def images(self, d: dict) -> None:
        refs: list[str] = []
        if d.get("kind") == "SpinApp":
            refs.append(dig(d, "spec", "image"))
        if d.get("kind") == "Cluster" and dig(d, "spec", "imageName"):
            refs.append(dig(d, "spec", "imageName"))
        ps = pod_spec(d)
        if ps is not None:
            for c in (ps.get("containers") or []) + (ps.get("initContainers") or []):
                refs.append(c.get("image"))
        for r in refs:
            msg = image_ok(r)
            if msg:
                self.add(d, msg)

    # privileges --------------------------------------------------------------
    def security(self, d: dict) -> None:
        ps = pod_spec(d)
        if ps is None:
            return
        for f in ("hostNetwork", "hostPID", "hostIPC"):
            if ps.get(f):
                self.add(d, f"{f}: true is not allowed")
        for v in ps.get("volumes") or []:
            if "hostPath" in v:
                self.add(d, f"hostPath volume {v.get('name')!r} is not allowed")
        pod_sc = ps.get("securityContext") or {}
        for c in (ps.get("containers") or []) + (ps.get("initContainers") or []):
            sc = c.get("securityContext") or {}
            name = c.get("name")
            if sc.get("privileged"):
                self.add(d, f"container {name!r} is privileged")
            if sc.get("allowPrivilegeEscalation") is not False:
                self.add(d, f"container {name!r} must set allowPrivilegeEscalation: false")
            if dig(sc, "capabilities", "add"):
                self.add(d, f"container {name!r} adds capabilities {dig(sc, 'capabilities', 'add')}")
            if "ALL" not in (dig(sc, "capabilities", "drop") or []):
                self.add(d, f"container {name!r} must drop ALL capabilities")
            if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
                self.add(d, f"container {name!r} may run as root (set runAsNonRoot: true)")
            if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
                self.add(d, f"container {name!r} runs as UID 0")

    # probes and resources ----------------------------------------------------
    def probes_and_resources(self, d: dict) -> None:
        kind = d.get("kind")
        if kind == "SpinApp":
            for probe, suffix in (("liveness", "/healthz"), ("readiness", "/readyz")):
                if probe == "readiness" and dig(d, "metadata", "name") in HEALTH_ONLY:
                    suffix = "/healthz"
                path = dig(d, "spec", "checks", probe, "httpGet", "path")
                if not path:
                    self.add(d, f"no {probe} check (spec.checks.{probe}.httpGet.path)")
                elif not path.endswith(suffix):
                    self.add(d, f"{probe} check path {path!r} should end with {suffix}")
            for m in resources_ok(dig(d, "spec", "resources"), "SpinApp"):
                self.add(d, m)
            return
        if kind == "Cluster":
            for m in resources_ok(dig(d, "spec", "resources"), "Cluster"):
                self.add(d, m)
            return
        ps = pod_spec(d)
        if ps is None:
            return
        for c in (ps.get("containers") or []) + (ps.get("initContainers") or []):
            for m in resources_ok(c.get("resources"), f"container {c.get('name')!r}"):
                self.add(d, m)
            if kind in LONG_RUNNING and c in (ps.get("containers") or []):
                for p in ("livenessProbe", "readinessProbe"):
                    if not c.get(p):
                        self.add(d, f"container {c.get('name')!r} has no {p}")

    # secrets -----------------------------------------------------------------
    def secrets(self, d: dict) -> None:
        kind = d.get("kind")
        if kind == "Secret" and (d.get("data") or d.get("stringData")):
            self.add(d, "Secret with data in the manifests: secrets are created out of band (scripts/create-secrets.sh)")
        if kind == "ConfigMap":
            for k, v in (d.get("data") or {}).items():
                if SECRETISH.search(k) and not k.endswith(("_host", "_public_keys")):
                    self.add(d, f"ConfigMap key {k!r} looks like a secret: use a Secret")
        for path, s in walk_strings(d):
            if CRED_URL.search(s):
                self.add(d, f"credentials in a URL at {path}")
            if PEM.search(s):
                self.add(d, f"private key material at {path}")
        ps = pod_spec(d)
        if ps is not None:
            for c in (ps.get("containers") or []) + (ps.get("initContainers") or []):
                for e in c.get("env") or []:
                    if "value" in e and SECRETISH.search(e.get("name", "")):
                        self.add(d, f"env {e['name']!r} of {c.get('name')!r} has a plain value: use valueFrom.secretKeyRef")
        if kind == "SpinApp":
            secret_vars = self._secret_vars()
            for v in dig(d, "spec", "variables", default=[]) or []:
                name = v.get("name", "")
                sensitive = name in secret_vars or SECRETISH.search(name)
                if "value" in v and sensitive:
                    self.add(d, f"variable {name!r} has a plain value: use valueFrom.secretKeyRef")
                elif sensitive and not dig(v, "valueFrom", "secretKeyRef"):
                    self.add(d, f"variable {name!r} is secret but not read from a Secret")

    def _secret_vars(self) -> set[str]:
        if not self.spin:
            return set()
        return {k for k, v in (self.spin.get("variables") or {}).items() if isinstance(v, dict) and v.get("secret")}

    # ingress -----------------------------------------------------------------
    def ingress(self, d: dict) -> None:
        if d.get("kind") != "Ingress":
            return
        if dig(d, "spec", "defaultBackend"):
            self.add(d, "defaultBackend would expose every path: route /api/ prefixes only")
        for rule in dig(d, "spec", "rules", default=[]) or []:
            for p in dig(rule, "http", "paths", default=[]) or []:
                path = p.get("path", "")
                backend = dig(p, "backend", "service", "name")
                if "/internal" in path:
                    self.add(d, f"path {path!r} exposes an internal endpoint")
                elif path == "/":
                    if backend not in ROOT_PATH_BACKENDS:
                        self.add(d, f"path '/' goes to {backend!r}: only the storefront (web) may have every path outside /api/")
                elif not path.startswith("/api/"):
                    self.add(d, f"path {path!r} is not under /api/")

    # command lines -------------------------------------------------------------
    def command_lines(self, d: dict) -> None:
        """A secret on a command line shows in `ps`, /proc/<pid>/cmdline and tooling output."""
        ps = pod_spec(d)
        if ps is None:
            return
        for c in (ps.get("containers") or []) + (ps.get("initContainers") or []):
            secret_env = {e.get("name") for e in c.get("env") or [] if dig(e, "valueFrom", "secretKeyRef")}
            words = [str(w) for w in (c.get("command") or []) + (c.get("args") or [])]
            for w in words:
                for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", w):
                    if var in secret_env or SECRETISH.search(var):
                        self.add(d, f"container {c.get('name')!r} passes the secret {var} on its command line: let the program read it from the environment")
                if w.lstrip("-").lower() in ("requirepass", "masterauth", "password", "database-url", "db-url"):
                    self.add(d, f"container {c.get('name')!r} has {w!r} on its command line: use a config file or the environment")

    # relay identity ------------------------------------------------------------
    def relay(self, d: dict) -> None:
        if d.get("kind") != "CronJob" or dig(d, "metadata", "labels", "app.kubernetes.io/component") != "outbox-relay":
            return
        ps = pod_spec(d) or {}
        for c in ps.get("containers") or []:
            args = [str(a) for a in c.get("args") or []]
            who = args[args.index("--service") + 1] if "--service" in args[:-1] else None
            if who != RELAY_IDENTITY:
                self.add(d, f"relay signs as {who!r}: it must sign as {RELAY_IDENTITY!r} (--service {RELAY_IDENTITY})")
            for e in c.get("env") or []:
                ref = dig(e, "valueFrom", "secretKeyRef", "name")
                if ref in SIGNING_SECRETS and ref != RELAY_SECRET:
                    self.add(d, f"relay reads the signing key Secret {ref!r}: only {RELAY_SECRET!r}")
        for v in ps.get("volumes") or []:
            names = [dig(v, "secret", "secretName")] + [dig(src, "secret", "name") for src in dig(v, "projected", "sources", default=[]) or []]
            for ref in names:
                if ref in SIGNING_SECRETS and ref != RELAY_SECRET:
                    self.add(d, f"relay mounts the signing key Secret {ref!r}: only {RELAY_SECRET!r}")

    # egress ------------------------------------------------------------------
    def egress(self) -> None:
        nps = [d for d in self.docs if d.get("kind") == "NetworkPolicy"]
        for a in (d for d in self.docs if d.get("kind") == "SpinApp"):
            name = dig(a, "metadata", "name")
            if name not in EGRESS_ALLOWED:
                continue
            ns, labels = dig(a, "metadata", "namespace"), pod_labels(a)
            mine = [n for n in nps if dig(n, "metadata", "namespace") == ns and selects(dig(n, "spec", "podSelector"), labels)
                    and "Egress" in (dig(n, "spec", "policyTypes") or [])]
            if not mine:
                self.add(a, "no egress NetworkPolicy selects it: it may connect anywhere")
            for n in mine:
                for rule in dig(n, "spec", "egress", default=[]) or []:
                    peers, ports = rule.get("to"), rule.get("ports")
                    if not peers or not ports:
                        self.add(n, f"egress rule without `to` or `ports` lets {name} connect anywhere")
                        continue
                    for peer in peers:
                        if "ipBlock" in peer:
                            self.add(n, f"ipBlock egress peer for {name}: name the pods")
                            continue
                        ml = dig(peer, "podSelector", "matchLabels", default={}) or {}
                        who = (ml.get("core.spinkube.dev/app-name") or ml.get("app.kubernetes.io/name")
                               or ml.get("k8s-app") or ml.get("app.kubernetes.io/component"))
                        for p in ports:
                            if (who, p.get("port")) not in EGRESS_ALLOWED[name]:
                                self.add(n, f"lets {name} connect to {who or peer} port {p.get('port')}")

    # transport security ------------------------------------------------------
    def transport(self) -> None:
        cms = [d for d in self.docs if d.get("kind") == "ConfigMap" and dig(d, "metadata", "name") == "marketplace-transport"]
        for cm in cms:
            for k, allowed in TRANSPORT.items():
                v = dig(cm, "data", k)
                if v not in allowed:
                    self.add(cm, f"{k} is {v!r}, expected one of {sorted(allowed)}")
        if not self.production:
            return
        if not cms:
            self.add(None, "production: no ConfigMap marketplace-transport (overlays/production/transport.env)")
        for cm in cms:
            if dig(cm, "data", "redis_scheme") != "rediss":
                self.add(cm, "production must use rediss:// (redis_scheme: rediss)")
            if dig(cm, "data", "pg_sslmode") not in ("require", "verify-full"):
                self.add(cm, "production must use sslmode=require or verify-full (pg_sslmode)")
        conf = next((dig(d, "data", "redis.conf", default="") for d in self.docs
                     if d.get("kind") == "ConfigMap" and dig(d, "metadata", "name") == "redis-config"), None)
        for d in self.docs:
            if d.get("kind") == "StatefulSet" and dig(d, "spec", "template", "metadata", "labels", "app.kubernetes.io/component") == "key-value":
                if conf is None or not re.search(r"^tls-port\s+6379$", conf, re.M) or not re.search(r"^port\s+0$", conf, re.M):
                    self.add(d, "production Redis must serve TLS only (redis.conf: port 0, tls-port 6379)")
                vols = {dig(v, "secret", "secretName") for v in dig(d, "spec", "template", "spec", "volumes", default=[]) or []}
                if "redis-tls" not in vols:
                    self.add(d, "production Redis mounts no certificate (Secret redis-tls)")
            if d.get("kind") == "Cluster" and not dig(d, "spec", "certificates", "serverCASecret"):
                self.add(d, "production database: no spec.certificates.serverCASecret (the CA the clients verify)")
            if d.get("kind") == "Job" and dig(d, "metadata", "labels", "app.kubernetes.io/component") == "migration":
                env = {e.get("name") for c in dig(d, "spec", "template", "spec", "containers", default=[]) or [] for e in c.get("env") or []}
                if "PGSSLROOTCERT" not in env:
                    self.add(d, "production migration Job does not verify the database certificate (PGSSLROOTCERT)")

    # spin.toml agreement -----------------------------------------------------
    def spinapp(self, d: dict) -> None:
        if d.get("kind") != "SpinApp":
            return
        if dig(d, "spec", "executor") != EXECUTOR:
            self.add(d, f"executor must be {EXECUTOR}")
        if not self.spin:
            return
        name = d["metadata"]["name"]
        comps = self.spin.get("component") or {}
        selected = dig(d, "spec", "components")
        comp_ids = selected or [name]
        missing = [c for c in comp_ids if c not in comps]
        if missing:
            self.add(d, f"no component {missing} in spin.toml (a SpinApp is named after its component)")
            return
        used: set[str] = set()
        kv = False
        for cid in comp_ids:
            comp = comps[cid]
            texts = list((comp.get("variables") or {}).values()) + list(comp.get("allowed_outbound_hosts") or [])
            for t in texts:
                used |= set(re.findall(r"\{\{\s*([a-z0-9_]+)\s*\}\}", str(t)))
            kv = kv or bool(comp.get("key_value_stores"))
        decl = self.spin.get("variables") or {}
        given = {v.get("name") for v in dig(d, "spec", "variables", default=[]) or []}
        for v in sorted(given - used):
            self.add(d, f"variable {v!r} is not used by component(s) {comp_ids}")
        for v in sorted(used):
            spec = decl.get(v) or {}
            default = str(spec.get("default", ""))
            if v in given:
                continue
            if spec.get("required"):
                self.add(d, f"required variable {v!r} is not set")
            elif "127.0.0.1" in default or "spin.internal" in default or "localhost" in default:
                self.add(d, f"variable {v!r} keeps its laptop default {default!r}: set it for the cluster")
        has_rc = bool(dig(d, "spec", "runtimeConfig", "loadFromSecret"))
        if kv and not has_rc:
            self.add(d, "component uses key-value stores but spec.runtimeConfig.loadFromSecret is not set")
        if has_rc and not kv:
            self.add(d, "runtimeConfig.loadFromSecret set but the component uses no key-value store")

    # autoscaling -------------------------------------------------------------
    def autoscaling(self) -> None:
        by = {}
        for d in self.docs:
            by.setdefault((d.get("kind"), dig(d, "metadata", "namespace")), {})[dig(d, "metadata", "name")] = d
        scalers: dict[tuple[str, str], list[dict]] = {}
        for d in self.docs:
            if d.get("kind") == "ScaledObject":
                ref = dig(d, "spec", "scaleTargetRef", default={}) or {}
                kind = ref.get("kind", "Deployment")
                ns = dig(d, "metadata", "namespace")
                if kind == "SpinApp":
                    self.add(d, "SpinApp has no scale subresource: target the Deployment of the same name")
                    continue
                scalers.setdefault((ns, ref.get("name")), []).append(d)
                triggers = dig(d, "spec", "triggers", default=[]) or []
                if (dig(d, "spec", "minReplicaCount", default=0) == 0
                        and all(t.get("type") in ("cpu", "memory") for t in triggers)):
                    self.add(d, "minReplicaCount 0 needs a trigger other than cpu/memory")
                for t in triggers:
                    route = dig(t, "metadata", "interceptorRoute")
                    if t.get("type") == "external-push" and route and route not in by.get(("InterceptorRoute", ns), {}):
                        self.add(d, f"external-push trigger names InterceptorRoute {route!r}, which is not defined")
                name = ref.get("name")
                if name not in by.get(("SpinApp", ns), {}) and name not in by.get(("Deployment", ns), {}):
                    self.add(d, f"scales Deployment {name!r}, which neither a SpinApp nor a Deployment here creates")
            if d.get("kind") == "HorizontalPodAutoscaler":
                ref = dig(d, "spec", "scaleTargetRef", default={}) or {}
                scalers.setdefault((dig(d, "metadata", "namespace"), ref.get("name")), []).append(d)
        # A service that may be at zero replicas has no endpoints: an in-cluster caller that uses
        # its Service URL fails instead of waking it (the interceptor holds requests, the Service
        # does not).
        to_zero = {dig(d, "spec", "scaleTargetRef", "name") for d in self.docs if d.get("kind") == "ScaledObject"
                   and as_int(dig(d, "spec", "minReplicaCount", default=1), 1) == 0}
        for cm in (d for d in self.docs if d.get("kind") == "ConfigMap"):
            for k, v in (dig(cm, "data", default={}) or {}).items():
                m = re.match(r"https?://([a-z0-9-]+)\.", str(v))
                if k.endswith("_service_url") and m and m.group(1) in to_zero:
                    self.add(cm, f"{k} calls {m.group(1)!r} on its Service, but {m.group(1)} scales to zero: go through the interceptor")
        for d in self.docs:
            if d.get("kind") != "SpinApp":
                continue
            key = (dig(d, "metadata", "namespace"), dig(d, "metadata", "name"))
            auto = dig(d, "spec", "enableAutoscaling")
            if auto and dig(d, "spec", "replicas") is not None:
                self.add(d, "replicas together with enableAutoscaling (the webhook rejects it)")
            if auto and len(scalers.get(key, [])) != 1:
                self.add(d, f"enableAutoscaling needs exactly one ScaledObject/HPA on Deployment/{key[1]}, found {len(scalers.get(key, []))}")
            if not auto and scalers.get(key):
                self.add(d, "scaled by KEDA/HPA but enableAutoscaling is not true: the operator would fight it")

    def _min_replicas(self, d: dict) -> int:
        kind = d.get("kind")
        ns, name = dig(d, "metadata", "namespace"), dig(d, "metadata", "name")
        if kind == "SpinApp" and dig(d, "spec", "enableAutoscaling"):
            for s in self.docs:
                if s.get("kind") in ("ScaledObject", "HorizontalPodAutoscaler") and dig(s, "metadata", "namespace") == ns \
                        and dig(s, "spec", "scaleTargetRef", "name") == name:
                    return as_int(dig(s, "spec", "minReplicaCount", default=dig(s, "spec", "minReplicas", default=1)))
            return 1
        return as_int(dig(d, "spec", "replicas", default=1))

    def pdbs(self) -> None:
        pdbs = [d for d in self.docs if d.get("kind") == "PodDisruptionBudget"]
        for d in self.docs:
            if d.get("kind") not in ("SpinApp", "Deployment", "StatefulSet"):
                continue
            if self._min_replicas(d) <= 1:
                continue
            labels = pod_labels(d)
            ns = dig(d, "metadata", "namespace")
            if not any(dig(p, "metadata", "namespace") == ns and selects(dig(p, "spec", "selector"), labels) for p in pdbs):
                self.add(d, f"runs {self._min_replicas(d)}+ replicas but no PodDisruptionBudget selects its pods")
        for p in pdbs:
            if dig(p, "spec", "minAvailable") in (None,) and dig(p, "spec", "maxUnavailable") in (0, "0%"):
                self.add(p, "maxUnavailable 0 blocks every node drain")

    # network policies --------------------------------------------------------
    def network_policies(self) -> None:
        nps = [d for d in self.docs if d.get("kind") == "NetworkPolicy"]
        apps = [d for d in self.docs if d.get("kind") == "SpinApp"]
        if not apps:
            return
        for ns in sorted({dig(a, "metadata", "namespace") for a in apps}):
            if not any(dig(n, "metadata", "namespace") == ns and dig(n, "spec", "podSelector") == {}
                       and "Ingress" in (dig(n, "spec", "policyTypes") or []) and not dig(n, "spec", "ingress")
                       for n in nps):
                self.add(None, f"namespace {ns}: no default-deny ingress NetworkPolicy")
        for a in apps:
            name = dig(a, "metadata", "name")
            if name not in INTERNAL_CALLERS:
                continue
            ns = dig(a, "metadata", "namespace")
            labels = pod_labels(a)
            allowed = INTERNAL_CALLERS[name]
            for n in nps:
                if dig(n, "metadata", "namespace") != ns or not selects(dig(n, "spec", "podSelector"), labels):
                    continue
                if dig(n, "spec", "podSelector") == {} and dig(n, "spec", "ingress"):
                    self.add(n, "allows ingress to every pod of the namespace")
                for rule in dig(n, "spec", "ingress", default=[]) or []:
                    peers = rule.get("from")
                    if not peers:
                        self.add(n, f"lets anything reach {name} (a rule without `from`)")
                        continue
                    for peer in peers:
                        self._check_peer(n, name, peer, allowed)

    def _check_peer(self, n: dict, target: str, peer: dict, allowed: set[str]) -> None:
        if "ipBlock" in peer:
            self.add(n, f"ipBlock peer reaches {target}: name the calling pods instead")
            return
        nsel = peer.get("namespaceSelector")
        psel = peer.get("podSelector")
        if nsel is not None:
            ns_name = (nsel.get("matchLabels") or {}).get("kubernetes.io/metadata.name")
            if ns_name in EDGE_NAMESPACES and psel and (psel.get("matchLabels") or psel.get("matchExpressions")):
                return
            if ns_name in EDGE_NAMESPACES:
                self.add(n, f"lets every pod of namespace {ns_name} reach {target}: select the proxy pods")
                return
            self.add(n, f"lets pods of namespace {ns_name or nsel} reach {target}")
            return
        ml = (psel or {}).get("matchLabels") or {}
        who = ml.get("core.spinkube.dev/app-name") or ml.get("app.kubernetes.io/name")
        if not who:
            self.add(n, f"lets unnamed pods {psel} reach {target}")
        elif who not in allowed:
            self.add(n, f"lets {who!r} reach {target}; only {sorted(allowed) or 'the ingress'} may")

    # migrations --------------------------------------------------------------
    def migrations(self) -> None:
        clusters = [d for d in self.docs if d.get("kind") == "Cluster"]
        jobs = [d for d in self.docs if d.get("kind") == "Job"]
        for c in clusters:
            name = dig(c, "metadata", "name")
            if not any(dig(j, "metadata", "labels", "marketplace.dev/database") == name for j in jobs):
                self.add(c, "no migration Job (label marketplace.dev/database) for this database")


# ----------------------------------------------------------------------------- driver
def load_target(target: str) -> list[dict]:
    p = Path(target)
    text = kustomize.build(str(p)) if p.is_dir() else p.read_text()
    return [d for d in yaml.safe_load_all(text) if d]


def main(argv: list[str] | None = None) -> int:
    root = HERE.parent.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("targets", nargs="+")
    ap.add_argument("--crds", default=os.environ.get("MARKETPLACE_CRDS_DIR", str(root.parent / "shared" / "crds")))
    ap.add_argument("--spin-toml", default=str(root / "spin.toml"))
    ap.add_argument("--k8s-version", default=os.environ.get("K8S_SCHEMA_VERSION", "1.33.0"))
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--production", action="append", default=[], metavar="TARGET",
                    help="also hold TARGET to the production rules (TLS in transit); may repeat")
    args = ap.parse_args(argv)

    crd_dir = Path(args.crds)
    if not crd_dir.is_dir():
        print(f"CRD directory {crd_dir} not found (set MARKETPLACE_CRDS_DIR)", file=sys.stderr)
        return 2
    crds = load_crds(crd_dir)
    spin = tomllib.loads(Path(args.spin_toml).read_text()) if args.spin_toml and Path(args.spin_toml).exists() else None

    findings: list[str] = []
    for t in args.targets:
        try:
            docs = load_target(t)
        except (kustomize.KustomizeError, yaml.YAMLError, OSError) as e:
            findings.append(f"{t}: cannot load: {e}")
            continue
        if not docs:
            findings.append(f"{t}: no documents")
        for d in docs:
            for m in check_schema(d, crds, args.k8s_version):
                findings.append(f"{t}: {ident(d)}: {m}")
        production = t in args.production or any(Path(t).resolve() == Path(p).resolve() for p in args.production)
        findings += [f"{t}: {m}" for m in Policy(docs, spin, production).run()]
        if not args.quiet:
            kinds: dict[str, int] = {}
            for d in docs:
                kinds[d.get("kind")] = kinds.get(d.get("kind"), 0) + 1
            print(f"{t}: {len(docs)} documents ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))})")
    for f in findings:
        print(f"FINDING {f}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
