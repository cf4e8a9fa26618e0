"""`python -m commands`: the `wxarchive` command (how `up` starts its child processes)."""

import sys

from commands.main import main

sys.exit(main())
