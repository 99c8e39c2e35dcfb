"""`python3 -m vnetct.cli`: the vnetct command line (./vnetct)."""

import sys

from vnetct.cli.main import main

sys.exit(main())
