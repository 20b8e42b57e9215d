"""lwsbridge: WebSockets inside someone else's event loop, the libwebsockets way."""

from lwsbridge.core import *  # noqa: F403
from lwsbridge.core import __all__ as _core_all

# The one version source: pyproject.toml reads it ([tool.setuptools.dynamic]).
__version__ = "0.1.0"
__all__ = [*_core_all, "__version__"]
