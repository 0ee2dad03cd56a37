"""Suite-wide settings.

Tests run with --import-mode=importlib so that unit and integration files may share a basename; the
helper modules beside them (`_<area>_fixtures.py`) are made importable here instead.
"""

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
for _sub in ("unit", "integration"):
    _p = str(_TESTS / _sub)
    if _p not in sys.path:
        sys.path.insert(0, _p)
