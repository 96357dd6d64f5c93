"""``python -m command_center``: see ``command_center.cli``."""

import sys

from command_center.cli import main

sys.exit(main())
