"""`python -m services.cli`: the `credits` command without its installed script."""

import sys

from services.cli.main import main

sys.exit(main())
