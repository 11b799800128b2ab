# Type stub for the cffi extension built from csrc/ (petra/_native_build.py).
# Only petra/shm/_core.py imports it; cdata objects are untyped by nature.
from typing import Any

ffi: Any
lib: Any
