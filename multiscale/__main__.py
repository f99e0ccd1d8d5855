import sys

from multiscale.cli import main

sys.exit(main())
