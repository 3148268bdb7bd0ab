"""``python -m drivers.zwo list|which``: see :func:`drivers.zwo.listing.main`."""

import sys

from drivers.zwo.listing import main

sys.exit(main())
