import sys

from airflow_provider_gee.emulator.cli import main

sys.exit(main())
