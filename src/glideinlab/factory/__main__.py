"""``python3 -m glideinlab.factory --config factory.yaml``."""

import sys

from .daemon import main

sys.exit(main())
