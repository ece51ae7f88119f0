"""``python -m peerctl`` is ``peerctl``."""

import sys

from peerctl.cli import main

sys.exit(main())
