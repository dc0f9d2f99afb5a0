import sys

from gee_emulator.cli import main

sys.exit(main())
