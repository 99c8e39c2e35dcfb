"""SUT profiles: what plays the host under test."""

PROFILES = {
    "qemu": "real QEMU with a tiny Linux guest under the best working accelerator (default)",
}
