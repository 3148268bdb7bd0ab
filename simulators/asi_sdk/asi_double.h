/*
 * asi_double.h - declarations for calibd's test double of ZWO's libASICamera2.
 *
 * Written for calibd from the documented ABI of the ASI camera SDK (function names, argument
 * types, struct layouts and numeric codes that bindings such as zwoasi rely on). Names of our own
 * types are lower-case with a _t suffix so they cannot be mistaken for the vendor header.
 *
 * Layout notes (LP64 Linux): `long` is 8 bytes, enums are passed as int, the camera-info struct
 * is 248 bytes and the control-caps struct 264 bytes; tests compare these sizes with zwoasi's
 * ctypes structures through ASIDoubleSizeof().
 */
#ifndef CALIBD_ASI_DOUBLE_H
#define CALIBD_ASI_DOUBLE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes (ASI_ERROR_CODE values). */
enum {
    DBL_OK = 0,
    DBL_ERR_INVALID_INDEX = 1,
    DBL_ERR_INVALID_ID = 2,
    DBL_ERR_INVALID_CONTROL_TYPE = 3,
    DBL_ERR_CAMERA_CLOSED = 4,
    DBL_ERR_CAMERA_REMOVED = 5,
    DBL_ERR_INVALID_PATH = 6,
    DBL_ERR_INVALID_FILEFORMAT = 7,
    DBL_ERR_INVALID_SIZE = 8,
    DBL_ERR_INVALID_IMGTYPE = 9,
    DBL_ERR_OUTOF_BOUNDARY = 10,
    DBL_ERR_TIMEOUT = 11,
    DBL_ERR_INVALID_SEQUENCE = 12,
    DBL_ERR_BUFFER_TOO_SMALL = 13,
    DBL_ERR_VIDEO_MODE_ACTIVE = 14,
    DBL_ERR_EXPOSURE_IN_PROGRESS = 15,
    DBL_ERR_GENERAL_ERROR = 16,
    DBL_ERR_INVALID_MODE = 17
};

/* Image formats. */
enum { DBL_IMG_RAW8 = 0, DBL_IMG_RGB24 = 1, DBL_IMG_RAW16 = 2, DBL_IMG_Y8 = 3, DBL_IMG_END = -1 };

/* Exposure states. */
enum { DBL_EXP_IDLE = 0, DBL_EXP_WORKING = 1, DBL_EXP_SUCCESS = 2, DBL_EXP_FAILED = 3 };

/* Control types (the SDK numbers them 0..N; only the ones the double offers are named). */
enum {
    DBL_CTL_GAIN = 0,
    DBL_CTL_EXPOSURE = 1, /* microseconds */
    DBL_CTL_OFFSET = 5,
    DBL_CTL_BANDWIDTH = 6, /* USB bandwidth limit, percent */
    DBL_CTL_TEMPERATURE = 8, /* sensor temperature x 10, read-only */
    DBL_CTL_FLIP = 9,
    DBL_CTL_HARDWARE_BIN = 13,
    DBL_CTL_HIGH_SPEED = 14,
    DBL_CTL_COOLER_POWER = 15, /* percent, read-only */
    DBL_CTL_TARGET_TEMP = 16, /* whole degrees C (not x 10) */
    DBL_CTL_COOLER_ON = 17,
    DBL_CTL_MONO_BIN = 18, /* colour cameras: bin all four colours into one (mono) value */
    DBL_CTL_ANTI_DEW = 21,
    DBL_CTL_TYPES = 32 /* size of the value table; larger types are rejected */
};

enum { DBL_MODE_NORMAL = 0, DBL_MODE_END = -1 };

typedef struct {
    char name[64];
    int camera_id; /* handle for every other call; not the enumeration index */
    long max_height;
    long max_width;
    int is_color;
    int bayer;
    int bins[16]; /* zero-terminated */
    int formats[8]; /* DBL_IMG_END-terminated */
    double pixel_um;
    int mech_shutter;
    int st4;
    int cooled;
    int usb3_host;
    int usb3_camera;
    float e_per_adu; /* electrons per native ADU at gain 0 */
    int bit_depth;
    int trigger_cam;
    char reserved[16];
} dbl_camera_info_t;

typedef struct {
    char name[64];
    char description[128];
    long max_value;
    long min_value;
    long default_value;
    int auto_supported;
    int writable;
    int control_type;
    char reserved[32];
} dbl_control_caps_t;

typedef struct {
    unsigned char bytes[8];
} dbl_id8_t; /* used for both the user-settable camera ID and the serial number */

typedef struct {
    int modes[16];
} dbl_modes_t;

/* ---- the SDK surface (same symbol names and calling convention as libASICamera2) ---- */
int ASIGetNumOfConnectedCameras(void);
int ASIGetProductIDs(int *pids);
int ASICameraCheck(int vid, int pid);
int ASIGetCameraProperty(dbl_camera_info_t *info, int index);
int ASIGetCameraPropertyByID(int id, dbl_camera_info_t *info);
int ASIOpenCamera(int id);
int ASIInitCamera(int id);
int ASICloseCamera(int id);
int ASIGetNumOfControls(int id, int *count);
int ASIGetControlCaps(int id, int index, dbl_control_caps_t *caps);
int ASIGetControlValue(int id, int type, long *value, int *is_auto);
int ASISetControlValue(int id, int type, long value, int is_auto);
int ASISetROIFormat(int id, int width, int height, int bin, int img_type);
int ASIGetROIFormat(int id, int *width, int *height, int *bin, int *img_type);
int ASISetStartPos(int id, int x, int y);
int ASIGetStartPos(int id, int *x, int *y);
int ASIGetDroppedFrames(int id, int *dropped);
int ASIEnableDarkSubtract(int id, char *bmp_path);
int ASIDisableDarkSubtract(int id);
int ASIStartVideoCapture(int id);
int ASIStopVideoCapture(int id);
int ASIGetVideoData(int id, unsigned char *buffer, long size, int wait_ms);
int ASIPulseGuideOn(int id, int direction);
int ASIPulseGuideOff(int id, int direction);
int ASIStartExposure(int id, int is_dark);
int ASIStopExposure(int id);
int ASIGetExpStatus(int id, int *status);
int ASIGetDataAfterExp(int id, unsigned char *buffer, long size);
int ASIGetID(int id, dbl_id8_t *out);
int ASISetID(int id, dbl_id8_t value);
int ASIGetSerialNumber(int id, dbl_id8_t *out);
int ASIGetGainOffset(int id, int *offset_highest_dr, int *offset_unity_gain, int *gain_lowest_rn,
                     int *offset_lowest_rn);
int ASIGetLMHGainOffset(int id, int *low_gain, int *mid_gain, int *high_gain, int *high_offset);
char *ASIGetSDKVersion(void);
int ASIGetCameraSupportMode(int id, dbl_modes_t *modes);
int ASIGetCameraMode(int id, int *mode);
int ASISetCameraMode(int id, int mode);
int ASISendSoftTrigger(int id, int start);
int ASISetTriggerOutputIOConf(int id, int pin, int pin_high, long delay_us, long duration_us);
int ASIGetTriggerOutputIOConf(int id, int pin, int *pin_high, long *delay_us, long *duration_us);

/* ---- double-only control surface (not in the real SDK) ----
 *
 * ASIDoubleConfigure: "key=value" items separated by ';' or newlines (values may contain spaces;
 * a bare "key" means key=1). Returns 0, or -1 with a message for ASIDoubleLastError(). Keys are
 * listed in asi_double.c (and simulators/asi_sdk/README.md). $ASI_DOUBLE_CONFIG, same syntax, is
 * applied at first use.
 * ASIDoubleStat: counters for tests ("calls", "present", "exposures", ...); camera slot `slot`.
 * ASIDoubleSizeof: sizes of the ABI structs ("camera_info", "control_caps", "id").
 */
int ASIDoubleConfigure(const char *text);
const char *ASIDoubleLastError(void);
long ASIDoubleStat(const char *name, int slot);
int ASIDoubleSizeof(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* CALIBD_ASI_DOUBLE_H */
