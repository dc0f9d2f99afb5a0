"""A local stand-in for the Google services the provider talks to: Earth Engine REST v1, Drive v3
and the OAuth token endpoint, on one loopback port. Start it with ``gee-emulator`` or use
:class:`EmulatorServer` in-process.
"""

from airflow_provider_gee.emulator.ee_state import EmulatorConfig
from airflow_provider_gee.emulator.server import EmulatorServer

__all__ = ["EmulatorConfig", "EmulatorServer"]
