"""``python -m petra.bench``: the same as the ``petra-bench`` command."""

import sys

from petra.bench import main

sys.exit(main())
