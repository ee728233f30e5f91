"""`python -m vlmrl` is the `vlmrl` command."""

import sys

from vlmrl.cli import main

sys.exit(main())
