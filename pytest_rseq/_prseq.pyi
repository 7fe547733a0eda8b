# Stub for the cffi-compiled core (native/build.py); see pytest_rseq/_native.py.
from typing import Any

ffi: Any
lib: Any
