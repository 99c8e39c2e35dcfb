#!/usr/bin/python3
"""The fully emulated SR-IOV path of issue 18, measured: an L1 guest (TCG,
intel-iommu) with two emulated igb PFs on a wire creates a VF on each, gives
them the failover MAC through their PFs, binds them to vfio-pci and restores
L2 (TCG inside TCG) from a snapshot: QEMU plugs the source PF's VF as the
failover primary and igbvf enslaves under net_failover. The first run (or
--save-runs N) boots L2 in a saving L1 and caches its snapshot on L0.

A thin caller of vnetct.nested (harness/python/vnetct/nested/): the steps,
the snapshot cache and the judgement live there.

    /usr/bin/python3 guest_agent/image/nested/nested_vf.py [--out DIR] [--runs N] [--save-runs N]
        [--timeout S] [--l1-mem MB] [--l2-mem MB] [--l2-tb-mb MB] [--l2-append TEXT] [--vf-mac MAC]

Needs the C++ build's guest agent and native module (build/, or VNETCT_BUILD_DIR) and builds the kernel
if it is not cached. Writes DIR/save-N/ and DIR/restore-N/ (l1-console.log: host arrival time, line) and
DIR/nested.json: each run's marks and step times, and each step's median."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "harness" / "python"))
from vnetct.nested import l1, l2, l2_snapshot, runner  # noqa: E402
from vnetct.setup import nested_kernel  # noqa: E402
from vnetct.sut.qemu import qemu_version  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "nested")
    parser.add_argument("--runs", type=int, default=1, help="L1s restoring L2")
    parser.add_argument("--save-runs", type=int, default=0,
                        help="saving L1s run first, each replacing the cached snapshot (0: only if none is cached)")
    parser.add_argument("--timeout", type=float, default=900.0, help="per L1")
    parser.add_argument("--l1-mem", type=int, default=384, help="L1's memory (MiB)")
    parser.add_argument("--l2-mem", type=int, default=96, help="L2's memory (MiB)")
    parser.add_argument("--l2-tb-mb", type=int, default=32, help="L2's QEMU translation buffer (MiB)")
    parser.add_argument("--l2-append", default=l2.L2_APPEND, help="more of L2's kernel command line")
    parser.add_argument("--vf-mac", default=None, help="the VFs' MAC through the PFs (default: the pair's; another "
                        "is a seeded fault the enslave check must catch)")
    args = parser.parse_args()
    config = l1.L1Config(mem_mib=args.l1_mem, vf_mac=args.vf_mac,
                         l2=l2.L2Config(mem_mib=args.l2_mem, tb_mib=args.l2_tb_mb, append=args.l2_append))
    started = time.monotonic()
    kernel = nested_kernel.ensure_kernel()
    kernel_s = time.monotonic() - started
    prepared = runner.prepare(config, kernel.bzimage, args.out)
    snapshots = l2_snapshot.cache(qemu_version(l1.QEMU))
    saves, restores, failures = [], [], []
    for index in range(args.save_runs):
        print(f"nested: saving run {index + 1}/{args.save_runs}", flush=True)
        snapshots.forget(prepared.inputs.key())
        try:
            saves.append(runner.save(prepared, snapshots, args.out / f"save-{index + 1}", args.timeout)[1])
        except runner.NestedRunFailed as error:
            failures.append(str(error))
            saves.append(error.record)
        print(json.dumps({"steps_s": saves[-1]["steps_s"], "failure": saves[-1]["failure"]}), flush=True)
    for index in range(args.runs):
        print(f"nested: restoring run {index + 1}/{args.runs}", flush=True)
        try:
            snapshot, made = runner.ensure_snapshot(prepared, snapshots, args.out / f"save-{index + 1}",
                                                    args.timeout)
            if made is not None:
                saves.append(made)
            restores.append(runner.restore(prepared, snapshot, args.out / f"restore-{index + 1}", args.timeout))
        except runner.NestedRunFailed as error:
            failures.append(str(error))
            (saves if "snapshot" not in error.record else restores).append(error.record)
        print(json.dumps({"steps_s": restores[-1]["steps_s"] if restores else {}, "failures": failures}),
              flush=True)
    passed_saves = [r for r in saves if not r["failure"] and not r["host_profile_problems"]]
    passed_restores = [r for r in restores if not r["failure"] and not r["host_profile_problems"]]
    result = {"kernel": {"bzimage": str(kernel.bzimage), "key": kernel.key, "ensure_seconds": round(kernel_s, 1)},
              "config": dataclasses.asdict(config), "l1_initramfs_bytes": prepared.base_initrd.stat().st_size,
              "snapshot_key": prepared.inputs.key()[:12], "host_profiles": {k: str(v) for k, v in
                                                                            prepared.profiles.items()},
              "saves": saves, "restores": restores, "failures": failures,
              "median_s": {"save": runner.medians(passed_saves, runner.SAVE_STEPS),
                           "restore": runner.medians(passed_restores, runner.RESTORE_STEPS)}}
    (args.out / "nested.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"passed": f"{len(passed_saves)}/{len(saves)} saves, {len(passed_restores)}/{len(restores)} "
                                f"restores", "median_s": result["median_s"], "failures": failures}))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
