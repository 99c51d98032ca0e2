import sys

from posd.cli import main

sys.exit(main())
