#!/usr/bin/env python3
"""Self-test of validate_manifests.py: every fixture under fixtures/ breaks one rule and must be
rejected with the message named on its `# expect:` line; fixtures/good/ must pass."""
from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import validate_manifests  # noqa: E402


def run(path: Path) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = validate_manifests.main([str(path), "--quiet"])
    return rc, out.getvalue()


def main() -> int:
    passed = failed = 0
    for f in sorted((HERE / "fixtures").glob("*.yaml")):
        expect = next((line.split(":", 1)[1].strip() for line in f.read_text().splitlines()
                       if line.startswith("# expect:")), None)
        rc, out = run(f)
        if rc == 1 and expect and expect in out:
            passed += 1
            print(f"ok   rejects {f.name}: {expect}")
        else:
            failed += 1
            print(f"FAIL {f.name}: rc={rc}, expected a finding containing {expect!r}; got:\n{out}")
    for f in sorted((HERE / "fixtures" / "good").glob("*.yaml")):
        rc, out = run(f)
        if rc == 0:
            passed += 1
            print(f"ok   accepts good/{f.name}")
        else:
            failed += 1
            print(f"FAIL good/{f.name} was rejected:\n{out}")
    print(f"validator self-test: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
