"""Starts real `registry` processes for the browser and API tests, as
registry-core/tests/it/harness.rs does: loopback only, a fresh data directory each, the same
flags, and `ready` on the output as the signal that a member serves."""

import base64
import os
import queue
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import json

GRPC_OFFSET = 1000
CLUSTER_OFFSET = 1001
# Health checks dial the addresses instances register; tests register made-up ones.
CONFIG = "[naming.health_check]\nenabled = false\n"
ADMIN_PASSWORD = "console-test-admin"
# The token secret every member shares (base64 of 32 bytes), so a token works on all.
SECRET = base64.b64encode(b"console-test-secret-32-bytes-xyz").decode()


def patience():
    """Multiplier of every deadline, from IT_PATIENCE (as the Rust harness)."""
    try:
        return max(1, int(os.environ.get("IT_PATIENCE", "1")))
    except ValueError:
        return 1


def eventually(what, check, seconds=20):
    """Polls `check` until it answers truthy; fails with `what` after the deadline."""
    deadline = time.monotonic() + seconds * patience()
    last = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except Exception as e:  # a member still starting answers errors
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def free_member_ports(n):
    """`n` HTTP ports whose +1000 and +1001 are free too, spread apart."""
    import random
    out = []
    while len(out) < n:
        p = random.randint(10_000, 30_000)
        if any(abs(o - p) <= 1002 for o in out):
            continue
        ok = True
        for q in (p, p + GRPC_OFFSET, p + CLUSTER_OFFSET):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    ok = False
        if ok:
            out.append(p)
    return out


class Server:
    """One `registry` process."""

    def __init__(self, binary, http_port, extra=(), env=None):
        self.temp = tempfile.TemporaryDirectory(prefix="console-test-")
        config = os.path.join(self.temp.name, "registry.toml")
        with open(config, "w") as f:
            f.write(CONFIG)
        self.http_port = http_port
        cmd = [binary, "--bind", "127.0.0.1", "--http-port", str(http_port),
               "--grpc-port", str(http_port + GRPC_OFFSET if http_port else 0),
               "--data-dir", os.path.join(self.temp.name, "data"), "--config", config, *extra]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("NACOS_")}
        full_env.update({"RUST_LOG": "info", "NACOS_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
                         "NACOS_AUTH_TOKEN": SECRET}, **(env or {}))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env)
        self.output = []
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.output.append(line.rstrip())
            self.lines.put(line)

    def wait_ready(self, seconds=60):
        deadline = time.monotonic() + seconds * patience()
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if "listening on http " in line:
                self.http_port = int(line.rsplit(":", 1)[1].strip())
            if line.rstrip().endswith(" ready"):
                return self
        self.stop()
        raise AssertionError("registry did not become ready; output:\n" + "\n".join(self.output[-60:]))

    @property
    def base(self):
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.temp.cleanup()

    # The HTTP API, to verify what the pages did.
    def call(self, method, path, params=None, token=None):
        params = dict(params or {})
        if token:
            params["accessToken"] = token
        query = urllib.parse.urlencode(params)
        url = f"{self.base}{path}"
        data = None
        if method in ("GET", "DELETE"):
            url += f"?{query}" if query else ""
        else:
            data = query.encode()
        req = urllib.request.Request(url, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10 * patience()) as answer:
            body = answer.read().decode()
        try:
            return json.loads(body)
        except ValueError:
            return body

    def login(self):
        return self.call("POST", "/nacos/v1/auth/login", {"username": "nacos", "password": ADMIN_PASSWORD})["accessToken"]


def standalone(binary):
    return Server(binary, 0).wait_ready()


def cluster(binary, n=3):
    ports = free_member_ports(n)
    members = ",".join(f"127.0.0.1:{p}" for p in ports)
    servers = [Server(binary, p, ["--node-id", str(i + 1), "--members", members,
                                  "--cluster-port", str(p + CLUSTER_OFFSET)]) for i, p in enumerate(ports)]
    try:
        for s in servers:
            s.wait_ready()
    except AssertionError:
        for s in servers:
            s.stop()
        raise
    return servers
