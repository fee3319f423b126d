"""Control of the parts of a running tools/scaled/up.sh topology, one at a time.

Everything here acts on processes of the soak's own run directory ($SCALED_RUN_DIR) only:
PostgreSQL servers through `pg_ctl -D <their data dir>`, Redis and app instances through the
pid files up.sh wrote (a pid counts only while its command line names the run directory).
"""

import glob
import os
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.request

from tokens import read_env

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUN = os.environ.get("SCALED_RUN_DIR", os.path.join(ROOT, ".spin", "soak"))
ENV = {**read_env(os.path.join(RUN, "secrets.env")), **read_env(os.path.join(RUN, "topology.env"))}
BASE = int(os.environ.get("SCALED_PORT_BASE", "27000"))


def _runtime():
    """What serves the app instances: tools/dev/runtime.sh (real Spin by default; the test host,
    HOST_BIN, with USE_TEST_HOST=1), as tools/scaled/up.sh starts them."""
    out = subprocess.run([os.path.join(ROOT, "tools", "dev", "runtime.sh")], capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


RUNTIME = _runtime()

PG_PORTS = {
    "order-pg-0": int(ENV["SCALED_PG_ORDER_0"]),
    "order-pg-1": int(ENV["SCALED_PG_ORDER_1"]),
    "product-pg": int(ENV["SCALED_PG_PRODUCT"]),
    "product-rep": int(ENV["SCALED_PG_REPLICA"]),
}
REDIS_PORTS = {"redis-a": int(ENV["SCALED_REDIS_A"]), "redis-b": int(ENV["SCALED_REDIS_B"])}
APP_PORTS = [int(p) for p in ENV["SCALED_APP_PORTS"].split()]


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _pgbin(tool):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    assert found, f"{tool} not found"
    return found[-1]


def _as_pg(cmd):
    return (["runuser", "-u", "postgres", "--"] + cmd) if os.getuid() == 0 else cmd


def _owned(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return RUN.encode() in f.read()
    except OSError:
        return False


def _pidfile(path):
    try:
        pid = int(open(path).read().strip())
    except (OSError, ValueError):
        return None
    return pid if _owned(pid) else None


def psql(port, db, sql):
    """Rows of a query, as lists of strings (tab-separated psql output)."""
    url = f"postgres://postgres@127.0.0.1:{port}/{db}?sslmode=disable"
    out = subprocess.run(["psql", url, "-qtAX", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"psql :{port}/{db}: {out.stderr}"
    return [line.split("\t") for line in out.stdout.splitlines() if line]


# --------------------------------------------------------------------------- PostgreSQL

def pg_stop(name, mode="immediate"):
    """`immediate` is a crash (no checkpoint, clients cut off); `fast` a clean shutdown."""
    subprocess.run(_as_pg([_pgbin("pg_ctl"), "-D", os.path.join(RUN, name), "-m", mode, "-w",
                           "stop"]), check=True, capture_output=True, timeout=120)


def pg_start(name):
    port = PG_PORTS[name]
    opts = (f"-p {port} -k {RUN}/sockets -c listen_addresses=127.0.0.1 -c max_connections=600 "
            "-c fsync=off -c synchronous_commit=on -c full_page_writes=on -c wal_level=replica "
            "-c max_wal_senders=8 -c hot_standby=on -c shared_buffers=256MB")
    d = os.path.join(RUN, name)
    subprocess.run(_as_pg([_pgbin("pg_ctl"), "-D", d, "-l", os.path.join(d, "server.log"), "-w",
                           "-t", "120", "start", "-o", opts]), check=True, capture_output=True,
                   timeout=180)


def replica_streaming(timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rows = psql(PG_PORTS["product-pg"], "postgres",
                        "select state from pg_stat_replication")
            if rows and rows[0][0] == "streaming":
                return True
        except AssertionError:
            pass
        time.sleep(0.5)
    return False


# --------------------------------------------------------------------------- Redis

def _redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          timeout=10).stdout


def redis_crash(name):
    """SIGKILL a Redis server after turning on its append-only file (as production runs it:
    up.sh's throwaway servers have no persistence, and a restarted empty Redis would be a lost
    disk, not a stopped server)."""
    port = REDIS_PORTS[name]
    _redis_cli(port, "config", "set", "appendfsync", "always")
    _redis_cli(port, "config", "set", "appendonly", "yes")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = _redis_cli(port, "info", "persistence")
        if ("aof_enabled:1" in info and "aof_rewrite_in_progress:0" in info
                and "aof_rewrite_scheduled:0" in info):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"{name}: append-only file not ready")
    pid = _pidfile(os.path.join(RUN, name, "redis.pid"))
    if pid is None:  # redis-server's own pid file; its command line is `redis-server 127.0.0.1:port`
        pid = int(open(os.path.join(RUN, name, "redis.pid")).read().strip())
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.05)


def redis_start(name):
    port = REDIS_PORTS[name]
    d = os.path.join(RUN, name)
    subprocess.run(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
                    "--databases", "1024", "--save", "", "--appendonly", "yes",
                    "--appendfsync", "always", "--dir", d, "--pidfile", f"{d}/redis.pid",
                    "--logfile", f"{d}/redis.log"], check=True, timeout=30)
    for _ in range(100):
        if _redis_cli(port, "ping").strip() == "PONG":
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} did not come back")


def redis_keys(name):
    return int(_redis_cli(REDIS_PORTS[name], "dbsize").strip() or 0)


# --------------------------------------------------------------------------- app instances

def _wait_http(url, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not healthy after {timeout}s")


def app_start(n, extra_env=None):
    """Instance n as up.sh starts it (port base+20+n), with its pid file in the run dir, in a
    session of its own. On Spin, start-up compiles the components unless the Wasmtime cache
    holds them (~10-20 s on 2 cores): it is ready once it answers (`Serving http://…`)."""
    port = BASE + 20 + n
    env = {**os.environ, **ENV, **(extra_env or {})}
    logf = open(os.path.join(RUN, f"app-{n}.log"), "ab")
    p = subprocess.Popen([RUNTIME, "up", "-f", os.path.join(ROOT, "spin.toml"), "--listen",
                          f"127.0.0.1:{port}", "--runtime-config-file",
                          os.path.join(RUN, "runtime-config.toml")],
                         env=env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    with open(os.path.join(RUN, f"app-{n}.pid"), "w") as f:
        f.write(str(p.pid))
    t = time.monotonic()
    _wait_http(f"http://127.0.0.1:{port}/api/users/healthz", 180)
    log(f"app-{n} serving on :{port} after {time.monotonic() - t:.1f} s ({os.path.basename(RUNTIME)})")
    return port


def _session(pid):
    """The processes of the session `pid` leads (up.sh and app_start start each instance with
    setsid): `spin up` serves from a child, `spin trigger http`, which a signal to the parent
    alone would leave running (SIGKILL is not forwarded)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[3]) == pid and _owned(int(d)):  # field 6: session id
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def app_kill(n, sig=signal.SIGKILL):
    """Kills instance n: the process up.sh started and, on Spin, its serving child."""
    pid = _pidfile(os.path.join(RUN, f"app-{n}.pid"))
    assert pid, f"app-{n} is not running"
    procs = _session(pid) or [pid]
    for p in procs:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    for _ in range(200):
        if not any(os.path.exists(f"/proc/{p}") and not _zombie(p) for p in procs):
            break
        try:
            os.waitpid(pid, os.WNOHANG)  # our own child (a restarted instance) is reaped here
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return pid


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------- a gate

class Gate:
    """A TCP forwarder on 127.0.0.1:port to 127.0.0.1:target that can be shut: while shut
    nothing listens on the port (connection refused) and open connections are cut."""

    def __init__(self, port, target):
        self.port, self.target = port, target
        self._lock = threading.Lock()
        self._conns = set()
        self._listener = None
        self._stop = False
        self.open()

    def open(self):
        with self._lock:
            if self._listener:
                return
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", self.port))
            s.listen(128)
            self._listener = s
            threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def shut(self):
        with self._lock:
            s, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if s:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self._stop = True
        self.shut()

    def _accept(self, s):
        while True:
            try:
                client, _ = s.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not s:
                    client.close(); upstream.close()
                    return
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                r, _, _ = select.select([a, b], [], [], 1.0)
                for src in r:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except OSError:
            pass
        finally:
            for c in (a, b):
                try:
                    c.close()
                except OSError:
                    pass
            with self._lock:
                self._conns.discard(a); self._conns.discard(b)
