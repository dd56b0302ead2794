"""edgerl.profiles: measured per-layer profiles of multi-exit DNN variants.

The loader (:mod:`edgerl.profiles.schema`) needs no torch; the zoo and the profiler do and
are imported only where used.
"""

from edgerl.profiles.schema import (
    DATA_DIR,
    SCHEMA_VERSION,
    CostEntry,
    Exit,
    HardwareInfo,
    LayerProfile,
    ProfileError,
    Unit,
    find_profile,
    interpolate_latency,
    iter_profile_files,
    load_all,
    load_profile,
    profile_from_dict,
    profile_path,
    save_profile,
)

__all__ = [
    "DATA_DIR",
    "SCHEMA_VERSION",
    "CostEntry",
    "Exit",
    "HardwareInfo",
    "LayerProfile",
    "ProfileError",
    "Unit",
    "find_profile",
    "interpolate_latency",
    "iter_profile_files",
    "load_all",
    "load_profile",
    "profile_from_dict",
    "profile_path",
    "save_profile",
]
