"""`make demo`: see airflow_provider_gee/emulator/demo.py."""

import sys

from airflow_provider_gee.emulator.demo import main

sys.exit(main())
