"""``python -m onlinel1`` is the ``onlinel1`` command."""
import sys

from onlinel1.cli import main

sys.exit(main())
