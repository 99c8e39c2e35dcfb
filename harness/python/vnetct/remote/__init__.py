"""The harness's side of the host agent daemon (vnetct-host-agent, host_agent/remote):
a host that is itself a guest (issue 18's L1) is driven over one byte stream,
QEMU's unix socket for L1's virtio-serial chardev. `client` speaks the
protocol (host_agent/remote/PROTOCOL.md); `relay` gives each relay a unix
socket on L0, so that the harness's own QMP and guest agent clients talk to
an L2 QEMU in L1 unchanged."""
