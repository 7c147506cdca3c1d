import sys

from minewatch.cli import main

sys.exit(main())
