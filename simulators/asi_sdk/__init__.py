"""A C double of ZWO's ASI camera SDK (``libASICamera2.so``) for testing the ZWO driver through
the real ``zwoasi`` bindings. See ``asi_double.c`` for the model and the configuration keys."""

from calibd.simulators.asi_sdk.build import DoubleBuildError
from calibd.simulators.asi_sdk.build import build_double
from calibd.simulators.asi_sdk.build import find_compiler
from calibd.simulators.asi_sdk.control import AsiDouble
from calibd.simulators.asi_sdk.control import AsiDoubleError

__all__ = ["AsiDouble", "AsiDoubleError", "DoubleBuildError", "build_double", "find_compiler"]
