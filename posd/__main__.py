import sys

from posd.cli.main import main

sys.exit(main())
