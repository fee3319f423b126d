#!/usr/bin/env python3
"""Supply-chain policy of the GitHub Actions workflows.

    check_workflows.py WORKFLOW.yml...

Findings (exit 1 when any):
- an action not pinned to a full commit SHA (`owner/repo@<40 hex>`), or pinned without the
  release it stands for in a comment on the same line (`# v4.2.2`), so that an update is a
  reviewed diff and a moved tag or branch changes nothing;
- a workflow without a top-level `permissions:`, or one that grants any write permission
  workflow-wide (every job would get it);
- a job without its own `permissions:` (each job says what its token may do);
- a write permission in a job that holds the cluster credentials (`secrets.KUBE_CONFIG`), or a
  third-party action in such a job (anything but GitHub's own `actions/*`: it would run with the
  kubeconfig on disk, post steps included);
- `packages: write` in a job that pushes no image.
Local actions (`./...`) and `docker://image@sha256:...` are pinned by construction.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

SHA = re.compile(r"^[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*['\"]?([^'\"\s#]+)['\"]?\s*(?:#\s*(\S.*))?$")
TAG_COMMENT = re.compile(r"^v?\d+(\.\d+)*(\S*)$")
CLUSTER_SECRET = re.compile(r"secrets\.KUBE_CONFIG\b")


def writes(perms) -> list[str]:
    """The write grants of a `permissions:` value (a mapping, or the strings read-all/write-all)."""
    if perms == "write-all":
        return ["write-all"]
    if isinstance(perms, dict):
        return [f"{k}: write" for k, v in perms.items() if str(v) == "write"]
    return []


def check_uses(path: Path, text: str) -> list[str]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        m = USES_LINE.match(line)
        if not m:
            continue
        ref, comment = m.group(1), (m.group(2) or "").strip()
        if ref.startswith("./") or (ref.startswith("docker://") and "@sha256:" in ref):
            continue
        action, _, version = ref.partition("@")
        if not SHA.match(version):
            out.append(f"{path}:{n}: {ref} is not pinned to a commit SHA (use {action}@<40-hex sha> # <tag>)")
        elif not TAG_COMMENT.match(comment.split()[0] if comment else ""):
            out.append(f"{path}:{n}: {ref} has no `# <tag>` comment naming the release it pins")
    return out


def steps_uses(job: dict) -> list[str]:
    return [s["uses"] for s in job.get("steps") or [] if isinstance(s, dict) and s.get("uses")]


def pushes_images(job: dict) -> bool:
    text = yaml.safe_dump(job)
    return "--push" in text or "docker push" in text or "imagetools create" in text or "registry push" in text


def check_workflow(path: Path) -> list[str]:
    text = path.read_text()
    out = check_uses(path, text)
    try:
        wf = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        return out + [f"{path}: not YAML: {e}"]
    if "permissions" not in wf:
        out.append(f"{path}: no top-level `permissions:` (the repository default may grant write to every job)")
    for w in writes(wf.get("permissions")):
        out.append(f"{path}: workflow-wide write permission `{w}`: grant it to the one job that needs it")
    for name, job in (wf.get("jobs") or {}).items():
        if not isinstance(job, dict):
            continue
        if "permissions" not in job:
            out.append(f"{path}: job {name}: no `permissions:` of its own")
        job_writes = writes(job.get("permissions"))
        if CLUSTER_SECRET.search(yaml.safe_dump(job)):
            for w in job_writes:
                out.append(f"{path}: job {name} holds KUBE_CONFIG and has `{w}`: a job with the cluster credentials gets no write permission")
            for u in steps_uses(job):
                if not u.startswith(("actions/", "./")):
                    out.append(f"{path}: job {name} holds KUBE_CONFIG and runs the third-party action {u.split('@')[0]}")
        if "packages: write" in job_writes and not pushes_images(job):
            out.append(f"{path}: job {name} has `packages: write` but pushes no image")
    return out


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print(__doc__)
        return 2
    findings = [f for p in paths for f in check_workflow(p)]
    for f in findings:
        print(f"FINDING {f}")
    print(f"workflow policy: {len(paths)} workflows, {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
