"""Old import path of `siso_lib.features.preprocess`, kept so that existing code keeps working.

This name is the very same module object (`sys.modules` alias), so attributes set or patched
through either path are seen through both.
"""

import sys

from .features import preprocess as _module

sys.modules[__name__] = _module
