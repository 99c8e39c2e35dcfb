"""Seeded host faults: a real QEMU made to look like a buggy one (QMP events
dropped or forged, replies edited, argv rewritten, stderr filtered), to prove
that each verdict on the real QEMU path can fail, naming the rule the fault
breaks (./vnetct run --fault NAME, ./vnetct selftest)."""
