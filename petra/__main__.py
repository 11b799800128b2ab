import sys

from petra.cli import main

sys.exit(main())
