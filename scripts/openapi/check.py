"""The served OpenAPI document against a live `registry`: it validates (openapi-spec-validator),
and schemathesis, driven by it for a bounded time, finds no 5xx answer (check `no_server_error`
in hooks.py) and no crash, with client auth off and on. Usage: check.py BINARY SECONDS_PER_RUN."""

import json
import os
import subprocess
import sys
import urllib.request

from openapi_spec_validator import validate

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "console"))
from registry import Server, patience  # noqa: E402

BINARY, SECONDS = sys.argv[1], int(sys.argv[2])
SCHEMATHESIS = os.path.join(os.path.dirname(sys.executable), "schemathesis")
REPORTS = os.environ.get("OPENAPI_REPORTS", "target/openapi-check")


def fetch(url):
    with urllib.request.urlopen(url, timeout=10 * patience()) as answer:
        return answer.status, answer.read()


def run(auth):
    server = Server(BINARY, 0, ["--auth-enable", auth]).wait_ready()
    try:
        status, body = fetch(f"{server.base}/nacos/openapi.json")
        assert status == 200, status
        doc = json.loads(body)
        validate(doc)
        operations = sum(len(item) for item in doc["paths"].values())
        print(f"openapi-check (auth {auth}): the document validates: {operations} operations")
        # The administrator's token in both modes: the console and account handlers always
        # ask for one, and the fuzzer should reach past that check.
        headers = ["-H", f"accessToken: {server.login()}"]
        report = os.path.abspath(os.path.join(REPORTS, f"auth-{auth}"))
        os.makedirs(report, exist_ok=True)
        fuzz = subprocess.run(
            [SCHEMATHESIS, "run", f"{server.base}/nacos/openapi.json", "--url", server.base,
             "--checks", "no_server_error", "--max-time", str(SECONDS), "--max-examples", "40",
             # No fixed seed: each run samples anew; schemathesis prints the seed to replay one.
             "--request-timeout", str(10 * patience()), "--workers", "2",
             "--suppress-health-check", "all", "--no-color",
             "--report", "junit", "--report-dir", report, *headers],
            cwd=report, check=False,  # its cache (.schemathesis/) goes there too
            env={**os.environ, "SCHEMATHESIS_HOOKS": "hooks", "PYTHONPATH": HERE})
        # No crash: the server still runs and answers.
        assert server.proc.poll() is None, "the registry exited during the fuzzing:\n" + "\n".join(server.output[-40:])
        status, _ = fetch(f"{server.base}/nacos/v1/console/health/liveness")
        assert status == 200, status
        if fuzz.returncode != 0:
            print("\n".join(line for line in server.output if " ERROR " in line or "panicked" in line)[-4000:])
            raise SystemExit(f"openapi-check (auth {auth}): schemathesis failed (exit {fuzz.returncode}); "
                             f"report in {report}")
        print(f"openapi-check (auth {auth}): schemathesis found no server error")
    finally:
        server.stop()


for mode in ("false", "true"):
    run(mode)
print("openapi-check: 2 passed, 0 failed")
