#!/usr/bin/env python3
"""Self-test of the deploy validators: every fixture under fixtures/ breaks one rule and must be
rejected with the message named on its `# expect:` line (`# args: production` holds it to the
production rules); fixtures/good/ must pass. The same for the workflow policy
(check_workflows.py) on fixtures/workflows/*.yml and fixtures/workflows/good/."""
from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import check_workflows  # noqa: E402
import validate_manifests  # noqa: E402


def header(path: Path, key: str) -> str | None:
    return next((line.split(":", 1)[1].strip() for line in path.read_text().splitlines()
                 if line.startswith(f"# {key}:")), None)


def run(path: Path) -> tuple[int, str]:
    out = io.StringIO()
    extra = ["--production", str(path)] if header(path, "args") == "production" else []
    with contextlib.redirect_stdout(out):
        if path.suffix == ".yml":
            rc = check_workflows.main([str(path)])
        else:
            rc = validate_manifests.main([str(path), "--quiet", *extra])
    return rc, out.getvalue()


def main() -> int:
    passed = failed = 0
    bad = sorted((HERE / "fixtures").glob("*.yaml")) + sorted((HERE / "fixtures" / "workflows").glob("*.yml"))
    good = sorted((HERE / "fixtures" / "good").glob("*.yaml")) + sorted((HERE / "fixtures" / "workflows" / "good").glob("*.yml"))
    for f in bad:
        expect = header(f, "expect")
        rc, out = run(f)
        if rc == 1 and expect and expect in out:
            passed += 1
            print(f"ok   rejects {f.relative_to(HERE / 'fixtures')}: {expect}")
        else:
            failed += 1
            print(f"FAIL {f.name}: rc={rc}, expected a finding containing {expect!r}; got:\n{out}")
    for f in good:
        rc, out = run(f)
        name = f.relative_to(HERE / "fixtures")
        if rc == 0:
            passed += 1
            print(f"ok   accepts {name}")
        else:
            failed += 1
            print(f"FAIL {name} was rejected:\n{out}")
    print(f"validator self-test: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
