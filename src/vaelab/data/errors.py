"""The one exception type of the data layer.

Every data problem (a missing, truncated or corrupt file, a failed download, a bad array) raises
``DataError`` with one message that names the file, says what is wrong and says what to do, so the
CLI can print it as it is instead of a traceback.
"""

from __future__ import annotations

from vaelab.errors import DataError

__all__ = ["DataError"]
