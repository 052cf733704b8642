import sys

from edgebnn.cli import main

sys.exit(main())
