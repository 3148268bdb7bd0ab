"""``python -m calibd.drivers.zwo list|which``: see :func:`calibd.drivers.zwo.listing.main`."""

import sys

from calibd.drivers.zwo.listing import main

sys.exit(main())
