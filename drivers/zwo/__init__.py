"""ZWO ASI cameras through the ``zwoasi`` ctypes bindings and ZWO's ``libASICamera2``.

**Finding the SDK** (no manual steps): an explicit ``sdk_path``; else ``$ZWO_ASI_LIB`` or
``$CALIBD_ZWO_SDK``; else a system copy (``ctypes.util.find_library("ASICamera2")`` and the usual
library directories, e.g. where INDI's ``libasi`` package installs it, or an unpacked SDK under
``/opt``); else the copy bundled in the PyPI package ``pyzwoasi``
(``pyzwoasi/lib/Linux/<arch>/libASICamera2.so.*``), located through ``importlib.metadata`` without
importing pyzwoasi (its import pulls in OpenCV). ``pip install --no-deps pyzwoasi`` is therefore
enough on a fresh machine. The library is loaded once per process (``zwoasi.init`` cannot switch
libraries); asking for a different one later raises :class:`~drivers.errors.DeviceUnavailable`.

**Licences.** pyzwoasi itself is MIT-licensed. The ``libASICamera2`` it bundles is ZWO's closed,
proprietary SDK binary: the wheel carries no licence text for it, ZWO publishes the SDK as a free
download for developers, and other projects (INDI's ``libasi``, PHD2, INDIGO) redistribute the same
binary with their drivers; no explicit redistribution grant from ZWO was found. calibd therefore
never ships or copies the library: it only loads a copy the user installed (from ZWO, a distribution
package, or pyzwoasi). ``zwoasi`` is MIT-licensed.

**Blocking and deadlines.** ZWO cameras hang and drop off USB in the field, so every SDK call of a
camera runs on that camera's own worker thread and the caller waits with a deadline
(``call_timeout_s``, default 10 s). An exposure is polled until ``2 x exposure + 0.5 s + download``
(ZWO's recommendation; ``timeout_s`` overrides it); a running exposure past that is stopped and
raises :class:`~drivers.errors.ExposureTimeout`. A call that does not return in time abandons the
worker (a daemon thread, never joined) and marks the camera unavailable
(:class:`~drivers.errors.DeviceUnavailable`); while that call is still stuck inside the SDK,
:meth:`ZwoCamera.connect` refuses at once (no second thread is sent into a wedged camera), and once
it returns, ``connect()`` re-enumerates and opens the camera again on a fresh worker. A call that
never returns at all leaves the camera unavailable until the process restarts.

**Identity.** Cameras are found by serial number (``ASIGetSerialNumber``, printed as 16 hex
digits) or by the user-settable ASI ID, never by USB index. The SDK's camera handle (``CameraID``)
can change when a camera re-enumerates, so it is re-read on every connect.

**zwoasi quirks handled here.** ``zwoasi.Camera`` uses the enumeration index as the camera handle
and its ``__del__`` closes the camera from the garbage collector (on any thread, without a
deadline); ``zwoasi``'s ROI helper passes the handle where the SDK expects an index. This module
therefore uses zwoasi's module-level wrappers with the real ``CameraID`` and calls the bound
``ASISetROIFormat`` itself. Images are RAW16, full frame at the binning, start position 0,0; the
width is rounded down to a multiple of 8 and the height to a multiple of 2 as the SDK requires
(the frame's shape says what was read out).

Run ``python -m calibd.drivers.zwo list`` to list connected cameras
(``calibd devices list --driver zwo``
prints the same).

**Modules.** :mod:`~drivers.zwo.sdk` finds and loads the SDK; :mod:`~drivers.zwo._worker` is the
per-camera worker thread with deadlines; :mod:`~drivers.zwo._identity` names cameras and
translates SDK errors; :mod:`~drivers.zwo._core` holds a camera's handle and SDK calls;
:mod:`~drivers.zwo.camera` the contract methods; :mod:`~drivers.zwo.listing` listing and the
command line.
"""

from calibd.drivers.zwo.camera import ZwoCamera
from calibd.drivers.zwo.camera import open_camera
from calibd.drivers.zwo.listing import NO_CAMERAS_MESSAGE
from calibd.drivers.zwo.listing import list_devices
from calibd.drivers.zwo.listing import main
from calibd.drivers.zwo.sdk import ENV_VARS
from calibd.drivers.zwo.sdk import SdkLocation
from calibd.drivers.zwo.sdk import find_sdk
from calibd.drivers.zwo.sdk import load_sdk
from calibd.drivers.zwo.sdk import sdk_version

__all__ = [
    "ENV_VARS",
    "NO_CAMERAS_MESSAGE",
    "SdkLocation",
    "ZwoCamera",
    "find_sdk",
    "list_devices",
    "load_sdk",
    "main",
    "open_camera",
    "sdk_version",
]
