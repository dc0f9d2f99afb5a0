"""A local stand-in for the Google services the provider talks to: Earth Engine REST v1, Drive v3
and the OAuth token endpoint, on one loopback port. Start it with ``gee-emulator`` or use
:class:`EmulatorServer` in-process.
"""

from gee_emulator.ee_state import EmulatorConfig
from gee_emulator.server import EmulatorServer

__version__ = "0.2.0"
__all__ = ["EmulatorConfig", "EmulatorServer", "__version__"]
