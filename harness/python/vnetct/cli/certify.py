"""`vnetct certify`: the figures a NIC vendor quotes, over several runs.

It runs the selected failover cases (default: the migration out and back
in with q35's default ACPI hot-plug) N times with `vnetct run`, each run a results
directory of its own under out/certify-<id>/runs/, then:
- collects every certification figure (report/certification.py: unplug
  latency, re-plug latency, downtime, switchover loss, longest loss window)
  from every run, with its median and its worst, each value checked against
  the thresholds;
- records an environment fingerprint: host kernel, QEMU, accelerator, guest
  kernel, the primary's driver as the guest saw it, and with --profile vf
  the PF's driver and firmware (`ethtool -i`); hashed as canonical JSON;
- writes certification.json and report.html (the last run's report, compared
  with the other runs, with the figures across all runs in its certification
  view).
Exit status: 0 certified (every run passed every selected case and every
figure has data within its limit), 1 not certified (the reasons are printed
and recorded), 2 bad usage, 3 set-up failed, 130 interrupted (the runs done
so far are still summarised)."""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

from vnetct.setup import bootstrap
from vnetct.sut.base import PROFILES, profile_named
from vnetct.core import paths
from vnetct.report import certification

# q35's default hot-plug (ACPI). Native PCIe hot-plug (the pciehp variant, -k failover/migrate/out-and-in)
# waits for the attention button's 5 s before the guest ejects: its unplug latency is ~5.3 s by design.
DEFAULT_SELECTION = "failover/migrate/out-and-in/unplug-migrate-replug/acpi"
CERTIFICATION_JSON = "certification.json"
SCHEMA = 1


def add_parser(commands) -> None:
    certify = commands.add_parser(
        "certify", help="run the failover migration cases several times and certify the figures",
        description=__doc__.split("\n\n")[0])
    certify.add_argument("--runs", type=int, default=3, metavar="N", help="how many runs (default: %(default)s)")
    certify.add_argument("-k", dest="keyword", default=DEFAULT_SELECTION, metavar="EXPR",
                         help="the cases (a vnetct run -k expression; default: %(default)s)")
    certify.add_argument("--qemu", metavar="PATH", default=str(paths.DEFAULT_QEMU),
                         help="QEMU binary under test (default: %(default)s)")
    certify.add_argument("--profile", metavar="NAME", default="qemu", help="SUT profile: qemu (default) or vf")
    certify.add_argument("--host-config", metavar="FILE", type=Path,
                         help="with --profile vf: the host profile (see harness/HOST-PROFILE.md)")
    certify.add_argument("--thresholds", type=Path, metavar="FILE",
                         help="JSON object of limits, e.g. {\"unplug_latency\": 0.5} (see reports/REPORT.md)")
    certify.add_argument("--out", metavar="DIR", type=Path, default=paths.OUT,
                         help="results root; the certification gets <DIR>/certify-<id> (default: %(default)s)")
    certify.add_argument("--no-setup", action="store_true", help="skip apt/build/image steps (they must be done)")


def say(text: str) -> None:
    print(f"vnetct certify: {text}", flush=True)


def command_certify(args) -> int:
    if args.runs < 1:
        print(f"vnetct: --runs {args.runs}: must be at least 1", file=sys.stderr)
        return 2
    try:
        profile = profile_named(args.profile)
    except KeyError as error:
        print(f"vnetct: {error.args[0]}", file=sys.stderr)
        return 2
    if not profile.gives_figures:
        print(f"vnetct: --profile {args.profile}: certify needs a profile whose runs give figures (with a "
              f"datapath): {', '.join(p.name for p in PROFILES.values() if p.gives_figures)}", file=sys.stderr)
        return 2
    problem = profile.usage_error([], args.host_config)
    if problem:
        print(f"vnetct: {problem}", file=sys.stderr)
        return 2
    try:
        limits = certification.load_thresholds(args.thresholds)
    except certification.ThresholdError as error:
        print(f"vnetct: --thresholds {error}", file=sys.stderr)
        return 2
    pf = None
    if args.host_config is not None:
        from vnetct.sut.host_profile import HostProfileError, load
        try:
            pf = load(args.host_config).pf
        except HostProfileError as error:
            print(f"vnetct: --host-config {error}", file=sys.stderr)
            return 2
    if not args.no_setup:
        bootstrap.prepare(with_image=True, targets=bootstrap.RUN_TARGETS)  # SetupError: exit 3 (cli.main)
    bootstrap.require_root()

    certify_dir = args.out.resolve() / f"certify-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    runs_root = certify_dir / "runs"
    runs_root.mkdir(parents=True)
    say(f"{args.runs} runs of -k '{args.keyword}', profile {args.profile}; everything in {certify_dir}")
    runs: List[dict] = []
    interrupted = False
    try:
        for index in range(1, args.runs + 1):
            command = [str(paths.REPO / "vnetct"), "run", "--no-setup", "--out", str(runs_root), "-k", args.keyword,
                       "--qemu", args.qemu, "--profile", args.profile]
            if args.host_config is not None:
                command += ["--host-config", str(args.host_config)]
            say(f"run {index}/{args.runs}: {' '.join(command)}")
            status = subprocess.run(command, cwd=paths.REPO, check=False).returncode
            latest = runs_root / "latest"
            run_dir = latest.resolve() if latest.exists() else None
            if run_dir is None or any(r["dir"] == str(run_dir) for r in runs):
                say(f"run {index}/{args.runs} left no results (exit {status})")
                runs.append({"index": index, "exit": status, "dir": None})
            else:
                runs.append({"index": index, "exit": status, "dir": str(run_dir)})
            if status == 130:
                interrupted = True
                break
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: summarising the runs done so far")
    summary = summarise(runs, limits, environment(runs, args.profile, pf), interrupted,
                        {"keyword": args.keyword, "runs_asked": args.runs, "qemu": args.qemu, "profile": args.profile,
                         "thresholds": str(args.thresholds) if args.thresholds else None,
                         "command": " ".join(["./vnetct", *sys.argv[1:]])})
    (certify_dir / CERTIFICATION_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    run_dirs = [Path(r["dir"]) for r in runs if r["dir"]]
    if run_dirs:
        from vnetct.report import write_report
        report = write_report(run_dirs[-1], list(reversed(run_dirs[:-1])), output=certify_dir / "report.html",
                              thresholds=args.thresholds, across_runs=summary)
        say(f"report: {report}")
    say(f"{CERTIFICATION_JSON}: {certify_dir / CERTIFICATION_JSON}")
    if interrupted:
        return 130
    return 0 if summary["verdict"] == "certified" else 1


def _results(run_dir: Optional[str]) -> Optional[dict]:
    if not run_dir:
        return None
    try:
        return json.loads((Path(run_dir) / "results.json").read_text())
    except (OSError, ValueError):
        return None


def summarise(runs: List[dict], limits: Dict[str, float], env: dict, interrupted: bool, asked: dict) -> dict:
    """Every figure over every run: values, median, worst, verdict; and the
    certification's verdict with its reasons."""
    figures = []
    reasons = []
    for run in runs:
        results = _results(run["dir"])
        if results is None:
            reasons.append(f"run {run['index']} left no results.json (exit {run['exit']})")
            continue
        bad = [c["id"] for c in results.get("cases", []) if c.get("outcome") not in ("passed",)]
        if bad:
            reasons.append(f"run {run['index']}: not every case passed: {', '.join(bad)}")
        if not results.get("cases"):
            reasons.append(f"run {run['index']}: no case was selected")
        run["summary"] = results.get("summary")
        run["run_id"] = results.get("run_id")
    for name, figure in certification.FIGURES.items():
        values = []
        for run in runs:
            results = _results(run["dir"])
            for case in (results or {}).get("cases", []):
                for metric, value in certification.figure_values(case, name).items():
                    values.append({"run": run["index"], "case": case["id"], "metric": metric, "value": value,
                                   "outcome": case.get("outcome"), "within": value <= limits[name]})
        entry = {"name": name, "title": figure["title"], "unit": figure["unit"], "limit": limits[name],
                 "meaning": figure["meaning"], "values": values, "count": len(values)}
        if values:
            entry["median"] = statistics.median(v["value"] for v in values)
            entry["worst"] = max(values, key=lambda v: v["value"])
            entry["verdict"] = "within" if all(v["within"] for v in values) else "exceeded"
            if entry["verdict"] == "exceeded":
                over = [v for v in values if not v["within"]]
                reasons.append(f"{name}: {len(over)} of {len(values)} values over {limits[name]:g} {figure['unit']}, "
                               f"worst {entry['worst']['value']:g} ({entry['worst']['case']}, run "
                               f"{entry['worst']['run']})")
        else:
            entry["median"], entry["worst"], entry["verdict"] = None, None, "no data"
            reasons.append(f"{name}: no selected case measured it")
        figures.append(entry)
    if interrupted:
        reasons.append("interrupted before every run was done")
    if len([r for r in runs if r["dir"]]) < asked["runs_asked"]:
        reasons.append(f"{len([r for r in runs if r['dir']])} of {asked['runs_asked']} runs have results")
    return {"schema": SCHEMA, "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "asked": asked, "runs": runs, "figures": figures, "environment": env,
            "fingerprint": certification.canonical_hash(env),
            "verdict": "not certified" if reasons else "certified", "reasons": reasons}


def ethtool_info(netdev: str) -> dict:
    """`ethtool -i NETDEV` as a dict (driver, version, firmware-version,
    bus-info, ...), or {"error": why}."""
    try:
        result = subprocess.run(["ethtool", "-i", netdev], capture_output=True, text=True, timeout=10, check=False)
    except FileNotFoundError:
        return {"error": "ethtool is not installed"}
    except subprocess.TimeoutExpired:
        return {"error": f"ethtool -i {netdev} did not answer within 10 s"}
    if result.returncode != 0:
        return {"error": f"ethtool -i {netdev}: exit {result.returncode}: {result.stderr.strip()}"}
    return parse_ethtool(result.stdout)


def parse_ethtool(text: str) -> dict:
    info = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip():
            info[key.strip()] = value.strip()
    return info


def environment(runs: List[dict], profile: str, pf: Optional[str]) -> dict:
    """What the figures depend on. The SUT fields come from the first run
    with results (and must agree across runs: a difference is recorded)."""
    suts = [r.get("sut") or {} for r in (_results(run["dir"]) for run in runs) if r]
    sut = suts[0] if suts else {}
    drivers = sorted({str(m["value"]) for r in (_results(run["dir"]) for run in runs) if r
                      for c in r.get("cases", []) for name, m in (c.get("metrics") or {}).items()
                      if name == "guest_primary_driver" and isinstance(m, dict)})
    env = {"profile": profile, "host_kernel": os.uname().release,
           "qemu_version": sut.get("qemu_version"), "qemu_binary": sut.get("qemu_binary"),
           "accelerator": (sut.get("accelerator") or {}).get("name"), "machine": sut.get("machine"),
           "guest_kernel": sut.get("guest_kernel"), "guest_image_digest": sut.get("guest_image_digest"),
           "nic_models": sut.get("nic_models"), "guest_primary_driver": drivers,
           "pf": ({"netdev": pf, **ethtool_info(pf)} if pf else "none: the primary is emulated by QEMU")}
    differing = sorted({key for other in suts[1:] for key in set(sut) | set(other) if other.get(key) != sut.get(key)})
    if differing:
        env["sut_differs_between_runs"] = differing
    return env


def print_summary(summary: dict) -> None:
    say(f"{len([r for r in summary['runs'] if r['dir']])} runs; environment fingerprint "
        f"sha256:{summary['fingerprint'][:16]}...")
    for figure in summary["figures"]:
        if figure["count"]:
            say(f"  {figure['title']}: median {figure['median']:.4g} {figure['unit']}, worst "
                f"{figure['worst']['value']:.4g} {figure['unit']} (limit {figure['limit']:g}) over "
                f"{figure['count']} values: {figure['verdict']}")
        else:
            say(f"  {figure['title']}: no data")
    say(f"verdict: {summary['verdict'].upper()}")
    for reason in summary["reasons"]:
        say(f"  - {reason}")
