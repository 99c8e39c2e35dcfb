"""`vnetct check-config DOMAIN.xml...`: a libvirt domain's failover
configuration (<teaming>) against libvirt's teaming rules (TEAM-*) and the
failover model's QEMU-side rules (FO-CFG-*), with the QEMU device options
libvirt would produce for each team (reference_impl/teaming).

Exit status: 0 every file conformant, 1 a file breaks a rule, 2 a file
cannot be checked (unreadable, too large, not well-formed, a DOCTYPE, not a
domain) or bad usage."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_parser(commands) -> None:
    check = commands.add_parser("check-config", help="check a libvirt domain XML's failover (<teaming>) "
                                                     "configuration and print the QEMU options",
                                description=__doc__.split("\n\n")[0])
    check.add_argument("files", nargs="+", type=Path, metavar="DOMAIN.xml")
    check.add_argument("--json", action="store_true", help="one JSON object per file instead of text")


def command_check_config(args) -> int:
    from vnetct.core.native import vnetct_native

    # The violations cite TEAM-* and FO-* (placement) rules.
    rules = {rule["id"]: rule["sentence"] for rule in vnetct_native.rules() if rule["id"].startswith(("TEAM-", "FO-"))}
    worst = 0
    for path in args.files:
        try:
            verdict = vnetct_native.teaming_check_file(str(path))
        except vnetct_native.TeamingError as error:
            worst = 2
            if args.json:
                print(json.dumps({"file": str(path), "error": error.code, "message": str(error)}))
            else:
                print(f"{path}: CANNOT CHECK ({error.code}): {error}")
            continue
        if not verdict["conformant"]:
            worst = max(worst, 1)
        if args.json:
            print(json.dumps(verdict))
            continue
        state = "conformant" if verdict["conformant"] else "NOT CONFORMANT"
        print(f"{path}: {state} ({verdict['interfaces']} interfaces, {verdict['teamed']} with <teaming>, "
              f"machine {verdict['machine'] or 'not given'})")
        for violation in verdict["violations"]:
            place = f"<{violation['element']}>" + (f" {violation['attribute']}=" if violation["attribute"] else "")
            print(f"  {violation['rule']} line {violation['line']} {place}: {violation['message']}")
            print(f"      rule: {rules.get(violation['rule'], '?')}")
        if verdict["argv"]:
            print("  QEMU options for the team(s):")
            for flag, value in zip(verdict["argv"][::2], verdict["argv"][1::2]):
                print(f"    {flag} {value}")
        elif verdict["teamed"] == 0:
            print("  no <teaming> interface: no failover configured")
    sys.stdout.flush()
    return worst
