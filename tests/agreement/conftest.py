"""Agreement test: the project's test host (target/debug/spin-test-host) and the real Spin
CLI serve the same probe app (fixtures/spin.toml + fixtures/runtime-config.toml), and every
check sends the same requests to both and compares the answers.

    tests/agreement/run.sh            (or `make agreement`)

The session starts, in a fresh directory under /tmp, a throwaway PostgreSQL
(tools/dev/pg.sh) and Redis (tools/dev/redis.sh), then both runtimes, each in a directory of
its own holding a copy of the manifest, the runtime config and the probe Wasm. Ports come
from tools/dev/free-port.sh, in 30000-30999 only. Everything started is stopped at the end.

What differs between the two runtimes on purpose (and nothing else):
* their listen ports and directories (so each has its own SQLite key-value file);
* the Redis database index in `@REDIS_URL@` (1 for the host, 2 for Spin), so that Redis
  `get-keys` (`KEYS *`) sees only that runtime's keys;
* the PostgreSQL database the checks send in their scripts (`agree_host` / `agree_spin`),
  so tables of one never collide with the other's.

Environment: SPIN_BIN (default ../shared/spin/spin, else `spin` on PATH), HOST_BIN (default
target/debug/spin-test-host), PROBE_WASM (default
target/wasm32-wasip2/release/probe_component.wasm), AGREEMENT_KEEP=1 keeps the run directory.
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIXTURES = HERE / "fixtures"
PORT_MIN, PORT_MAX = 30000, 30999


def _default_spin():
    shared = ROOT.parent / "shared" / "spin" / "spin"
    if shared.exists():
        return str(shared)
    return shutil.which("spin") or str(shared)


SPIN_BIN = os.environ.get("SPIN_BIN") or _default_spin()
HOST_BIN = os.environ.get("HOST_BIN") or str(ROOT / "target" / "debug" / "spin-test-host")
PROBE_WASM = os.environ.get("PROBE_WASM") or str(
    ROOT / "target" / "wasm32-wasip2" / "release" / "probe_component.wasm"
)

# The variables both runtimes get from the environment provider (SPIN_VARIABLE_<NAME>).
VARIABLES_ENV = {
    "SPIN_VARIABLE_FROM_ENV": "from-the-environment",
    "SPIN_VARIABLE_MUST_SET": "provided",
}


def free_port(base):
    """The first free port from `base` upwards (tools/dev/free-port.sh), inside 30000-30999."""
    out = subprocess.run(
        [str(ROOT / "tools/dev/free-port.sh"), str(base)],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    port = int(out)
    if not PORT_MIN <= port <= PORT_MAX:
        raise RuntimeError(f"no free port in {PORT_MIN}-{PORT_MAX} from {base} (got {port})")
    return port


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (lower-case name, value), in order
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"body is not JSON ({e}): {self.body[:500]!r}")

    def __repr__(self):
        return f"<{self.status} {self.headers} {self.body[:300]!r}>"


class Runtime:
    """One running `up` process (the test host or Spin) serving an app directory."""

    def __init__(self, name, binary, workdir, port, manifest, runtime_config, replacements):
        self.name = name
        self.binary = binary
        self.dir = Path(workdir)
        self.port = port
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROBE_WASM, self.dir / "probe.wasm")
        for src in (manifest, runtime_config):
            text = (FIXTURES / src).read_text()
            for k, v in replacements.items():
                text = text.replace(k, v)
            (self.dir / src).write_text(text)
        self.manifest = self.dir / manifest
        self.runtime_config = self.dir / runtime_config
        self.log_path = self.dir / "runtime.log"
        self.proc = None

    def start(self):
        env = dict(os.environ)
        env.update(VARIABLES_ENV)
        # Both runtimes print anyhow errors with `{:?}`, which appends a backtrace when
        # RUST_BACKTRACE is set (it is on some development machines): error texts the guest
        # sees would then carry host-specific stack traces. Neither runtime gets it.
        env.pop("RUST_BACKTRACE", None)
        env.pop("RUST_LIB_BACKTRACE", None)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [self.binary, "up", "-f", str(self.manifest), "--listen", f"127.0.0.1:{self.port}",
             "--runtime-config-file", str(self.runtime_config)],
            cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait(self, timeout=180):
        """Waits until the app answers its health check ("started") or the process exits
        ("exited"); returns which."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return "exited"
            try:
                r = self.request("GET", "/.well-known/spin/health", timeout=2)
                if r.status == 200:
                    return "started"
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} neither started nor exited in {timeout}s:\n{self.output()}")

    def output(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()

    def request(self, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            hdrs = {"user-agent": "agreement-test"}
            hdrs.update(headers or {})
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                hdrs.setdefault("content-type", "application/json")
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, [(k.lower(), v) for k, v in r.getheaders()], data)
        finally:
            conn.close()


class Pair:
    """The two runtimes; `both()` sends one request to each."""

    def __init__(self, host, spin, pg_urls, closed_port):
        self.host = host
        self.spin = spin
        self.runtimes = {"host": host, "spin": spin}
        self.pg_urls = pg_urls  # runtime name -> connection string of its own database
        self.closed_port = closed_port

    def both(self, method, path, body=None, headers=None):
        """(host response, spin response). A callable `body` is called with the runtime name
        (for bodies that differ per runtime, e.g. a PostgreSQL address)."""
        out = []
        for name, rt in self.runtimes.items():
            b = body(name) if callable(body) else body
            out.append(rt.request(method, path, body=b, headers=headers))
        return tuple(out)


def start_pair(run_dir, manifest, runtime_config, redis_port=None, extra=None):
    """Starts both runtimes on `manifest`; returns them (started or not) after waiting."""
    runtimes = []
    for i, (name, binary) in enumerate((("host", HOST_BIN), ("spin", SPIN_BIN))):
        repl = dict(extra or {})
        if redis_port:
            repl["@REDIS_URL@"] = f"redis://127.0.0.1:{redis_port}/{i + 1}"
        port = free_port(30300 + 100 * i)
        rt = Runtime(name, binary, Path(run_dir) / name, port, manifest, runtime_config, repl)
        runtimes.append(rt.start())
    states = [rt.wait() for rt in runtimes]
    return runtimes, states


def _run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def run_dir():
    for path in (HOST_BIN, SPIN_BIN, PROBE_WASM):
        if not Path(path).exists():
            pytest.exit(f"missing {path} (build first: `make build`)", returncode=2)
    d = tempfile.mkdtemp(prefix="agreement.", dir="/tmp")
    # PostgreSQL runs as the `postgres` user (pg.sh): it must be able to reach its data dir.
    os.chmod(d, 0o755)
    yield Path(d)
    if os.environ.get("AGREEMENT_KEEP"):
        print(f"\nagreement run directory kept: {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def services(run_dir):
    """A throwaway PostgreSQL and Redis; yields (pg_port, redis_port)."""
    started = []
    try:
        for attempt in range(10):
            pg_port = free_port(30000 + attempt)
            try:
                _run([str(ROOT / "tools/dev/pg.sh"), "start", str(run_dir / "pg"), str(pg_port)])
                break
            except subprocess.CalledProcessError as e:
                if attempt == 9:
                    raise RuntimeError(f"PostgreSQL did not start: {e.stderr}")
        started.append(lambda: subprocess.run(
            [str(ROOT / "tools/dev/pg.sh"), "stop", str(run_dir / "pg")], capture_output=True))
        for attempt in range(10):
            redis_port = free_port(30100 + attempt)
            try:
                _run([str(ROOT / "tools/dev/redis.sh"), "start", str(run_dir / "redis"),
                      str(redis_port)])
                break
            except subprocess.CalledProcessError as e:
                if attempt == 9:
                    raise RuntimeError(f"Redis did not start: {e.stderr}")
        started.append(lambda: subprocess.run(
            [str(ROOT / "tools/dev/redis.sh"), "stop", str(run_dir / "redis"), str(redis_port)],
            capture_output=True))
        for db in ("agree_host", "agree_spin"):
            _run(["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "-q",
                  "-c", f"CREATE DATABASE {db}"])
        yield pg_port, redis_port
    finally:
        for stop in reversed(started):
            stop()


@pytest.fixture(scope="session")
def pair(run_dir, services):
    pg_port, redis_port = services
    (host, spin), states = start_pair(run_dir / "app", "spin.toml", "runtime-config.toml",
                                      redis_port=redis_port)
    try:
        for rt, state in zip((host, spin), states):
            if state != "started":
                raise RuntimeError(f"{rt.name} did not start:\n{rt.output()}")
        pg_urls = {
            name: f"postgres://postgres@127.0.0.1:{pg_port}/agree_{name}?sslmode=disable"
            for name in ("host", "spin")
        }
        yield Pair(host, spin, pg_urls, closed_port=free_port(30900))
    finally:
        host.stop()
        spin.stop()
