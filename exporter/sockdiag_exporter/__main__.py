"""Entry point for ``python -m sockdiag_exporter``."""

import sys

from .cli import main

sys.exit(main())
