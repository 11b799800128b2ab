"""``python -m petra.top``: the same as the ``petra-top`` command."""

import sys

from petra.top import main

sys.exit(main())
