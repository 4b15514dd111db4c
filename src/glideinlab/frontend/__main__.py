"""``python3 -m glideinlab.frontend --config frontend.yaml``."""

import sys

from .daemon import main

sys.exit(main())
