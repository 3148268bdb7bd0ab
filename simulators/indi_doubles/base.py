"""The standard ``INDI::CCD`` vectors every camera driver defines (libindi ``indiccd.cpp``,
identical in 1.9.9 and 2.x for what is used here), built for one double family."""

from __future__ import annotations

from calibd.simulators.indi_doubles.families import DoubleFamily
from calibd.simulators.indi_doubles.protocol import Element
from calibd.simulators.indi_doubles.protocol import Vector
from calibd.simulators.indi_doubles.protocol import connection_vectors

MAIN = "Main Control"
IMAGE_SETTINGS = "Image Settings"
IMAGE_INFO = "Image Info"
OPTIONS = "Options"


def before_connect(f: DoubleFamily, polling_ms: int) -> list[Vector]:
    """Vectors a driver defines as soon as it starts (DefaultDevice)."""
    return [
        *connection_vectors(f.driver_name, f.executable, "2.2", "6"),  # CCD | GUIDER
        Vector("switch", "DEBUG", "Debug", OPTIONS, "rw",
               [Element("ENABLE", "Enable", False), Element("DISABLE", "Disable", True)]),
        Vector("switch", "CONFIG_PROCESS", "Configuration", OPTIONS, "rw", [
            Element("CONFIG_LOAD", "Load", False), Element("CONFIG_SAVE", "Save", False),
            Element("CONFIG_DEFAULT", "Default", False), Element("CONFIG_PURGE", "Purge", False),
        ], rule="AtMostOne"),
        Vector("number", "POLLING_PERIOD", "Polling", OPTIONS, "rw",
               [Element("PERIOD_MS", "Period (ms)", float(polling_ms), 10, 600000, 1000)],
               after_range_alert=None),
    ]


def after_connect(f: DoubleFamily, width: int, height: int, pixel_um: float,
                  max_bin: int) -> list[Vector]:
    """Vectors ``INDI::CCD::updateProperties`` defines once connected."""
    exp_lo, exp_hi = f.exposure_range_s
    t_lo, t_hi = f.setpoint_range_c
    vectors = [
        Vector("number", "CCD_EXPOSURE", "Expose", MAIN, "rw",
               [Element("CCD_EXPOSURE_VALUE", "Duration (s)", 1.0, exp_lo, exp_hi, 1)],
               after_range_alert=None),
        Vector("switch", "CCD_ABORT_EXPOSURE", "Abort", MAIN, "rw",
               [Element("ABORT", "Abort", False)], rule="AtMostOne"),
        Vector("number", "CCD_FRAME", "Frame", IMAGE_SETTINGS, "rw", [
            Element("X", "Left", 0, 0, width - 1, 1), Element("Y", "Top", 0, 0, height - 1, 1),
            Element("WIDTH", "Width", width, 1, width, 1),
            Element("HEIGHT", "Height", height, 1, height, 1)], after_range_alert=None),
        Vector("number", "CCD_BINNING", "Binning", IMAGE_SETTINGS, "rw", [
            Element("HOR_BIN", "X", 1, 1, max_bin, 1), Element("VER_BIN", "Y", 1, 1, max_bin, 1)],
               after_range_alert=None),
        Vector("switch", "CCD_FRAME_TYPE", "Type", IMAGE_SETTINGS, "rw", [
            Element("FRAME_LIGHT", "Light", True), Element("FRAME_BIAS", "Bias", False),
            Element("FRAME_DARK", "Dark", False), Element("FRAME_FLAT", "Flat", False)]),
        Vector("number", "CCD_INFO", "CCD Information", IMAGE_INFO, "ro", [
            Element("CCD_MAX_X", "Max. Width", width, 1, 16000, 0),
            Element("CCD_MAX_Y", "Max. Height", height, 1, 16000, 0),
            Element("CCD_PIXEL_SIZE", "Pixel size (um)", pixel_um, 1, 40, 0),
            Element("CCD_PIXEL_SIZE_X", "Pixel size X", pixel_um, 1, 40, 0),
            Element("CCD_PIXEL_SIZE_Y", "Pixel size Y", pixel_um, 1, 40, 0),
            Element("CCD_BITSPERPIXEL", "Bits per pixel", 16, 8, 64, 0)]),
        Vector("number", "CCD_TEMPERATURE", "Temperature", MAIN, "rw",
               [Element("CCD_TEMPERATURE_VALUE", "Temperature (C)", 0.0, t_lo, t_hi, 0)],
               after_range_alert=None),
        Vector("number", "CCD_TEMP_RAMP", "Temp. Ramp", MAIN, "rw", [
            Element("RAMP_SLOPE", "Max. dT (C/min)", 0, 0, 30, 1),
            Element("RAMP_THRESHOLD", "Threshold (C)", 0.2, 0.1, 2, 0.1)]),
        Vector("switch", "CCD_CAPTURE_FORMAT", "Format", IMAGE_SETTINGS, "rw",
               [Element(n, n, n == f.raw16) for n in f.capture_formats]),
        Vector("switch", "CCD_TRANSFER_FORMAT", "Encode", OPTIONS, "rw",
               [Element(n, n or "-", n == "FORMAT_FITS") for n in f.transfer_formats]),
        Vector("switch", "CCD_COMPRESSION", "Compression", OPTIONS, "rw", [
            Element("INDI_ENABLED", "Enabled", False), Element("INDI_DISABLED", "Disabled", True)]),
        Vector("switch", "UPLOAD_MODE", "Upload", OPTIONS, "rw", [
            Element("UPLOAD_CLIENT", "Client", True), Element("UPLOAD_LOCAL", "Local", False),
            Element("UPLOAD_BOTH", "Both", False)]),
        Vector("text", "UPLOAD_SETTINGS", "Upload Settings", OPTIONS, "rw", [
            Element("UPLOAD_DIR", "Dir", ""), Element("UPLOAD_PREFIX", "Prefix", "IMAGE_XXX")]),
        Vector("blob", "CCD1", "Image Data", "Image Info", "ro", [Element("CCD1", "Image", "")]),
        Vector("switch", "CCD_COOLER", "Cooler", MAIN, f.cooler_switch_perm, [
            Element("COOLER_ON", "ON", f.cooler_switch_default == "COOLER_ON"),
            Element("COOLER_OFF", "OFF", f.cooler_switch_default == "COOLER_OFF")]),
        Vector("number", f.cooler_power[0], "Cooling Power", MAIN, f.cooler_power[2],
               [Element(f.cooler_power[1], "Cooling Power (%)", 0.0, 0, 100, 1)]),
    ]
    if f.bayer:
        vectors.append(Vector("text", "CCD_CFA", "Bayer Info", IMAGE_INFO, "rw", [
            Element("CFA_OFFSET_X", "X Offset", "0"), Element("CFA_OFFSET_Y", "Y Offset", "0"),
            Element("CFA_TYPE", "Filter", f.bayer)]))
    vectors.extend(make(f) for make in f.extra)
    return vectors
