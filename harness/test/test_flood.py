"""A guest agent that floods the harness (1 GiB of valid events, as fast as
the socket takes them) costs the harness a bounded amount: the case waiting
on it fails naming the flood, the run goes on to the next case, and the
pytest process peaks under 200 MB (issue 17; the event log's byte bound,
json_line_channel.hpp)."""

import json
import subprocess
import sys
from pathlib import Path

from vnetct.core import paths

FLOODING_AGENT = r'''
import socket, sys
path, total = sys.argv[1], int(sys.argv[2])
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(1)
print("listening", flush=True)
conn, _ = server.accept()
chunk = (b'{"event":"spam","data":{"pad":"' + b"x" * 1000 + b'"}}\n') * 1024
sent = 0
try:
    while sent < total:
        conn.sendall(chunk)
        sent += len(chunk)
except OSError:
    pass
print(f"sent {sent}", flush=True)
'''

CASES = r'''import resource
import subprocess
import sys
import tempfile

import pytest

from vnetct.core.native import vnetct_native


@pytest.mark.rule("FO-NEG-01")
def test_a_flooding_agent(case, tmp_path):
    path = str(tmp_path / "agent.sock")
    agent = subprocess.Popen([sys.executable, "-c", AGENT, path, str(1 << 30)], stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout.readline() == "listening\n"
        client = vnetct_native.GuestAgentClient.connect(path, str(case.dir / "agent.jsonl"), 5)
        events = []
        try:
            client.wait_event("never", None, 0, 60)
        finally:
            events = client.events  # what a case would look at: converted to Python
            del client
            case.metric("events_kept", len(events))
    finally:
        agent.kill()
        agent.wait()


@pytest.mark.rule("FO-NEG-01")
def test_the_next_case(case):
    case.metric("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MB")
'''


def test_a_1gib_flood_fails_its_case_naming_it_and_the_run_goes_on_under_200mb(tmp_path: Path):
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "demo.py").write_text(f"AGENT = {FLOODING_AGENT!r}\n" + CASES)
    run_dir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "pytest", str(cases), "-p", "vnetct.plugin",
                             "--vnetct-profile=reference", f"--vnetct-run-dir={run_dir}",
                             "-p", "no:cacheprovider", "--import-mode=importlib", "-o", "python_files=*.py",
                             "-c", str(paths.REPO / "pytest.ini"), "--rootdir", str(tmp_path)],
                            capture_output=True, text=True, cwd=tmp_path, check=False, timeout=300)
    results = json.loads((run_dir / "results.json").read_text())
    by_name = {case["id"].rsplit("/", 1)[1]: case for case in results["cases"]}
    flooded, after = by_name["a-flooding-agent"], by_name["the-next-case"]
    assert flooded["outcome"] == "failed", result.stdout[-3000:]
    assert "sent more than 16777216 bytes of events" in flooded["reason"], flooded["reason"]
    assert after["outcome"] == "passed", result.stdout[-3000:]
    peak = after["metrics"]["peak_rss_mb"]["value"]
    print(f"peak RSS of the run's pytest process: {peak:.0f} MB; events kept "
          f"{flooded['metrics']['events_kept']['value']}")
    assert peak < 200, f"the harness peaked at {peak:.0f} MB under the flood"
