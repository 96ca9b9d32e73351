"""`python -m monitor` is the `crypitor` command."""

import sys

from monitor.cli import main

sys.exit(main())
