"""Import of the pybind11 module with a clear error when it was not built."""

from __future__ import annotations

import sys

from vnetct.core import paths

if str(paths.NATIVE_DIR) not in sys.path:
    sys.path.insert(0, str(paths.NATIVE_DIR))

try:
    import vnetct_native  # noqa: E402  (path set above)
except ImportError as error:  # pragma: no cover - exercised by a fresh checkout
    raise ImportError(
        f"vnetct_native is not built in {paths.NATIVE_DIR} ({error}); "
        "run ./vnetct run or ./vnetct test, which build it") from error

HostError = vnetct_native.HostError
HostTimeout = vnetct_native.HostTimeout
