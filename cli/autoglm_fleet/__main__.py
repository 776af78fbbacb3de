import sys

from autoglm_fleet.cli import main

sys.exit(main())
