#!/usr/bin/python3
"""Survey driver: boot one failover configuration under TCG, talk QMP, log everything.

usage: VC=/tmp/vc INITRD=... run.py NAME   (NAME's first letter picks the config a-f)
Needs $VC/cache/vmlinuz (from build_image.py --cache $VC/cache); writes $VC/runs/NAME/.
Netdevs are dgram sockets on 127.0.0.1 pointing at unused ports: no real network.
"""
import json, os, socket, subprocess, sys, threading, time
VC = os.environ.get("VC", "/tmp/vc")

CFG = {
    "a": ["-device", "virtio-net-pci,netdev=hn0,id=net1,mac=52:54:00:6f:55:cc,bus=root1,failover=on",
          "-device", "e1000e,netdev=hn1,id=hostdev0,bus=root2,mac=52:54:00:6f:55:cc,failover_pair_id=net1,romfile="],
    "b": ["-device", "virtio-net-pci,netdev=hn0,id=net1,mac=52:54:00:6f:55:cc,bus=root1,failover=on",
          "-device", "e1000e,netdev=hn1,bus=root2,mac=52:54:00:6f:55:cc,failover_pair_id=net1,romfile="],
    "c": ["-device", "virtio-net-pci,netdev=hn0,id=net1,mac=52:54:00:6f:55:cc,bus=root1,failover=on",
          "-device", "e1000e,netdev=hn1,id=hostdev0,bus=pcie.0,mac=52:54:00:6f:55:cc,failover_pair_id=net1,romfile="],
    "d": ["-device", "virtio-net-pci,netdev=hn0,id=net1,mac=52:54:00:6f:55:cc,bus=root1,failover=on",
          "-device", "e1000e,netdev=hn1,id=hostdev0,bus=root2,mac=52:54:00:6f:55:cc,failover_pair_id=nosuch,romfile="],
    "e": ["-device", "virtio-net-pci,netdev=hn0,id=net1,mac=52:54:00:6f:55:cc,bus=root1,failover=off",
          "-device", "e1000e,netdev=hn1,id=hostdev0,bus=root2,mac=52:54:00:6f:55:cc,failover_pair_id=net1,romfile="],
    "f": ["-device", "virtio-net-pci,netdev=hn0,id=net1,mac=52:54:00:6f:55:cc,bus=root1,failover=on",
          "-device", "igb,netdev=hn1,id=hostdev0,bus=root2,mac=52:54:00:6f:55:cc,failover_pair_id=net1,romfile="],
}

name = sys.argv[1]
cfgkey = name[0]
out = f"{VC}/runs/{name}"
os.makedirs(out, exist_ok=True)
serial = f"{out}/serial.log"
qmp_path = f"{out}/qmp.sock"
for p in (serial, qmp_path):
    if os.path.exists(p):
        os.unlink(p)
port = 47100 + 10 * (ord(cfgkey) - ord("a"))
argv = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-machine", "q35", "-m", "512",
        "-nodefaults", "-display", "none", "-serial", f"file:{serial}",
        "-kernel", f"{VC}/cache/vmlinuz", "-initrd", os.environ.get("INITRD", f"{VC}/survey/initramfs.cpio.zst"),
        "-append", "console=ttyS0 panic=-1", "-no-reboot",
        "-qmp", f"unix:{qmp_path},server=on,wait=off",
        "-device", "pcie-root-port,id=root1,chassis=1,slot=1",
        "-device", "pcie-root-port,id=root2,chassis=2,slot=2",
        "-netdev", f"dgram,id=hn0,local.type=inet,local.host=127.0.0.1,local.port={port},remote.type=inet,remote.host=127.0.0.1,remote.port={port+1}",
        "-netdev", f"dgram,id=hn1,local.type=inet,local.host=127.0.0.1,local.port={port+2},remote.type=inet,remote.host=127.0.0.1,remote.port={port+3}",
        ] + CFG[cfgkey]
log = open(f"{out}/transcript.txt", "w")
t0 = time.monotonic()
def L(msg):
    line = f"[{time.monotonic()-t0:7.3f}] {msg}"
    log.write(line + "\n"); log.flush(); print(line)

L("argv: " + " ".join(argv))
proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
def rd(stream, tag):
    for line in stream:
        L(f"{tag}: {line.rstrip()}")
threading.Thread(target=rd, args=(proc.stderr, "STDERR"), daemon=True).start()
threading.Thread(target=rd, args=(proc.stdout, "STDOUT"), daemon=True).start()

sock = None
for _ in range(100):
    if proc.poll() is not None:
        break
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(qmp_path); sock = s; break
    except OSError:
        time.sleep(0.05)
if sock is None:
    time.sleep(0.3)
    L(f"QEMU exited rc={proc.wait()} before QMP")
    sys.exit(0)

f = sock.makefile("rw")
events = []
replies = []
lock = threading.Condition()
def reader():
    try:
      for line in f:
        msg = json.loads(line)
        if "event" in msg:
            L("EVENT " + json.dumps(msg))
            events.append(msg)
        else:
            with lock:
                replies.append(msg); lock.notify_all()
    except OSError:
        pass
L("greeting " + f.readline().strip()[:100])
threading.Thread(target=reader, daemon=True).start()
def cmd(c, **args):
    m = {"execute": c}
    if args: m["arguments"] = args
    f.write(json.dumps(m) + "\n"); f.flush()
    with lock:
        while not replies:
            lock.wait(10)
        return replies.pop(0)

def pci_summary(r):
    res = []
    def walk(devs, busno):
        for d in devs:
            res.append(f"bus{d['bus']}:{d['slot']:02x}.{d['function']} {d['qdev_id'] or '-'} {d['class_info'].get('desc','?')} {d['id']['vendor']:04x}:{d['id']['device']:04x}")
            if "pci_bridge" in d and "devices" in d["pci_bridge"]:
                walk(d["pci_bridge"]["devices"], None)
    for bus in r["return"]:
        walk(bus["devices"], bus["bus"])
    return res

L("qmp_capabilities -> " + json.dumps(cmd("qmp_capabilities")))
L("qom-list /machine/peripheral: " + " ".join(sorted(p["name"] for p in cmd("qom-list", path="/machine/peripheral")["return"] if p["type"].startswith("child<"))))
L("query-pci (before guest loads drivers):")
for x in pci_summary(cmd("query-pci")): L("  " + x)

def wait_serial(text, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if text in open(serial, errors="replace").read():
                return time.monotonic() - t0
        except OSError:
            pass
        if proc.poll() is not None:
            return None
        time.sleep(0.02)
    return None

t_init = wait_serial("vnetct-init: starting agent", 60)
L(f"serial: /init line at {t_init}")
L("qom-list /machine/peripheral: " + " ".join(sorted(p["name"] for p in cmd("qom-list", path="/machine/peripheral")["return"] if p["type"].startswith("child<"))))
L("query-pci (after /init, before insmod):")
for x in pci_summary(cmd("query-pci")): L("  " + x)
t_mod = wait_serial("survey: all modules loaded", 60)
L(f"serial: all modules loaded at {t_mod}")
t_done = wait_serial("survey: done", 90)
L(f"serial: survey done at {t_done}")
L("qom-list /machine/peripheral: " + " ".join(sorted(p["name"] for p in cmd("qom-list", path="/machine/peripheral")["return"] if p["type"].startswith("child<"))))
L("qom-list /machine/peripheral-anon: " + " ".join(sorted(p["name"] for p in cmd("qom-list", path="/machine/peripheral-anon")["return"] if p["type"].startswith("child<"))))
L("query-pci (after):")
for x in pci_summary(cmd("query-pci")): L("  " + x)
tq = time.monotonic()
try:
    L("quit -> " + json.dumps(cmd("quit")))
except Exception as e:
    L(f"quit: {e}")
rc = proc.wait(30)
L(f"QEMU exited rc={rc}, {time.monotonic()-tq:.3f} s after quit")
time.sleep(0.2)
json.dump({"t_init": t_init, "t_modules": t_mod, "quit_s": time.monotonic()-tq - 0.2,
           "events": events}, open(f"{out}/summary.json", "w"), indent=1)
