/*
 * asi_double.c - a test double of ZWO's libASICamera2 for calibd.
 *
 * It exports the SDK functions that zwoasi 0.2.0 binds (plus ASIGetSerialNumber and a few other
 * public ones) with the same names, argument types and struct layouts, so unmodified zwoasi can
 * load it with zwoasi.init(path). Behind the API sit simulated cameras with:
 *
 *   - a sensor model that follows calibd's Python simulator (simulators/sensor.py):
 *     native e-/ADU = 10^(-(gain - unity)/200); 16-bit output = native ADU x 2^(16 - bits);
 *     pedestal = offset x 10 ADU16; a fixed per-column pattern; read noise
 *     rn(g) = rn_hi + (rn_lo - rn_hi) exp(-g / (0.5 unity)) e-; dark current
 *     D0 2^(T / 6 C) times a fixed log-normal map with hot pixels; amp glow along the right edge;
 *     PRNU, dead and cold pixels; cosmic rays; Poisson shot noise; clipping at the full well and
 *     at the ADC's full scale; binning averages b x b pixels;
 *   - a first-order cooler (time constant tau, equilibrium max(target, ambient - max_delta) when
 *     on, ambient when off; power = holding cost + a proportional pull-down term);
 *   - light from a simulated flat panel (panel_flux e-/s per pixel, mild vignetting) on frames
 *     taken with is_dark = false;
 *   - simulated time = time_scale x real time, for exposures and the cooler;
 *   - faults injected at run time: fail every Nth exposure, remove the camera after N more SDK
 *     calls (and reattach it with the same serial and ASI ID but a new camera handle), a one-shot
 *     hang in ASIStopExposure / ASIGetDataAfterExp / ASIGetExpStatus, an exposure that never ends.
 *
 * Configuration goes through ASIDoubleConfigure("key=value;key=value"), and at first use from the
 * environment variable ASI_DOUBLE_CONFIG (same syntax; for doubles loaded by a subprocess). Keys:
 *   global, rebuilding the cameras: reset, cameras, model, width, height, bit_depth, pixel_um,
 *     unity_gain, gain_max, offset_max, full_well, rn_low, rn_high, dark0, dark_doubling,
 *     dark_spread, hot_fraction, hot_min, hot_max, dead_fraction, cold_fraction, prnu, glow,
 *     glow_length, column_sigma, pedestal_per_offset, cosmic_rate, readout_s, min_exposure_us,
 *     max_exposure_us, cooled, usb3, tau_s, max_delta_c, proportional_c, bins (e.g. "1,2,4"),
 *     bayer (-1 mono; 0..3 = ASI_BAYER_RG/BG/GR/GB: a colour camera), cfa_r, cfa_g, cfa_b (light
 *     collected by a red/green/blue pixel per electron a bare pixel would collect), seed, serial (16 hex digits or up to 8 ASCII characters; camera k adds k to the last byte);
 *   global, at run time: time_scale, ambient_c, panel_flux, vignetting;
 *   per camera slot (after target=N, default 0): fail_every, remove_after, remove, reattach,
 *     reattach_after_s (every later removal re-plugs itself after this many real seconds; 0 = stay
 *     unplugged until "reattach"), hang_stop_s, hang_data_s, hang_status_s, stall_next, asi_id.
 *
 * Threading: one global mutex guards all state and is never held while sleeping, so a hung call
 * does not block the others. A call that sleeps re-validates its camera afterwards and returns
 * ASI_ERROR_CAMERA_REMOVED if the double was reset meanwhile (the generation counter changed).
 *
 * Build: gcc -shared -fPIC -O2 -Wall -Wextra -o libASICamera2.so asi_double.c -lm -lpthread
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "asi_double.h"

#define MAX_CAMS 8
#define MAX_TOKENS 96
#define TWO_PI 6.283185307179586
#define DBL_VERSION "1, 41, 0, 0 (calibd ASI SDK double)"

/* ------------------------------------------------------------------------------------------ */
/* configuration                                                                               */

typedef struct {
    char model[64];
    int cameras;
    int width, height, bit_depth;
    double pixel_um;
    int unity_gain, gain_max, offset_max;
    double full_well_e, rn_low_e, rn_high_e;
    double dark0_e_s, dark_doubling_c, dark_spread;
    double hot_fraction, hot_min, hot_max, dead_fraction, cold_fraction, prnu;
    double glow_e_s, glow_length_frac, column_sigma_adu, pedestal_per_offset;
    double cosmic_per_cm2_min;
    double readout_s; /* simulated seconds from end of exposure to image ready at 100 % USB */
    long min_exposure_us, max_exposure_us;
    int cooled, usb3;
    double tau_s, max_delta_c, proportional_c;
    int bins[16];
    int bayer; /* -1: monochrome; else ASI_BAYER_PATTERN of pixel (0, 0) */
    double cfa[3]; /* R, G, B light response of a colour pixel (vs. a bare one) */
    uint64_t seed;
    unsigned char serial[8];
} build_cfg_t;

typedef struct {
    double time_scale; /* simulated seconds per real second */
    double ambient_c;
    double panel_flux; /* e-/s per unbinned pixel on light frames */
    double vignetting; /* relative loss at the sensor corner */
} run_cfg_t;

/* The numeric keys that define the cameras: where each goes, its type (int, long or double),
 * its accepted range and its default. The one list for default_build() and apply_build_key(). */
typedef struct {
    const char *key;
    size_t offset;
    char type; /* 'i' int, 'l' long, 'd' double */
    double lo, hi, def;
} build_key_t;

#define BKEY(key, field, type, lo, hi, def) {key, offsetof(build_cfg_t, field), type, lo, hi, def}
static const build_key_t k_build_keys[] = {
    BKEY("cameras", cameras, 'i', 0, MAX_CAMS, 1),
    BKEY("bayer", bayer, 'i', -1, 3, -1), /* -1: monochrome */
    BKEY("cfa_r", cfa[0], 'd', 0.0, 10.0, 1.0),
    BKEY("cfa_g", cfa[1], 'd', 0.0, 10.0, 1.0),
    BKEY("cfa_b", cfa[2], 'd', 0.0, 10.0, 1.0),
    BKEY("width", width, 'i', 16, 20000, 640),
    BKEY("height", height, 'i', 16, 20000, 480),
    BKEY("bit_depth", bit_depth, 'i', 8, 16, 16),
    BKEY("pixel_um", pixel_um, 'd', 0.5, 30.0, 3.76),
    BKEY("unity_gain", unity_gain, 'i', 1, 1000, 100),
    BKEY("gain_max", gain_max, 'i', 0, 1000, 450),
    BKEY("offset_max", offset_max, 'i', 0, 1000, 100),
    BKEY("full_well", full_well_e, 'd', 100.0, 1e7, 50000.0),
    BKEY("rn_low", rn_low_e, 'd', 0.0, 100.0, 3.3),
    BKEY("rn_high", rn_high_e, 'd', 0.0, 100.0, 1.0),
    BKEY("dark0", dark0_e_s, 'd', 0.0, 1e4, 0.02),
    BKEY("dark_doubling", dark_doubling_c, 'd', 1.0, 50.0, 6.0),
    BKEY("dark_spread", dark_spread, 'd', 0.0, 3.0, 0.25),
    BKEY("hot_fraction", hot_fraction, 'd', 0.0, 0.1, 2e-4),
    BKEY("hot_min", hot_min, 'd', 1.0, 1e6, 50.0),
    BKEY("hot_max", hot_max, 'd', 1.0, 1e6, 2000.0),
    BKEY("dead_fraction", dead_fraction, 'd', 0.0, 0.1, 2e-5),
    BKEY("cold_fraction", cold_fraction, 'd', 0.0, 0.1, 5e-5),
    BKEY("prnu", prnu, 'd', 0.0, 0.5, 0.01),
    BKEY("glow", glow_e_s, 'd', 0.0, 1e4, 0.2),
    BKEY("glow_length", glow_length_frac, 'd', 0.0, 1.0, 0.05),
    BKEY("column_sigma", column_sigma_adu, 'd', 0.0, 1000.0, 1.5),
    BKEY("pedestal_per_offset", pedestal_per_offset, 'd', 0.0, 1000.0, 10.0),
    BKEY("cosmic_rate", cosmic_per_cm2_min, 'd', 0.0, 1e4, 1.0),
    BKEY("readout_s", readout_s, 'd', 0.0, 100.0, 0.05),
    BKEY("min_exposure_us", min_exposure_us, 'l', 1, 1000000000L, 32),
    BKEY("max_exposure_us", max_exposure_us, 'l', 1, 4000000000L, 2000L * 1000000L),
    BKEY("cooled", cooled, 'i', 0, 1, 1),
    BKEY("usb3", usb3, 'i', 0, 1, 1),
    BKEY("tau_s", tau_s, 'd', 0.01, 1e5, 40.0),
    BKEY("max_delta_c", max_delta_c, 'd', 1.0, 100.0, 35.0),
    BKEY("proportional_c", proportional_c, 'd', 0.01, 100.0, 4.0),
};
#define N_BUILD_KEYS ((int)(sizeof(k_build_keys) / sizeof(k_build_keys[0])))

/* Store ``v`` in the field of ``b`` that ``k`` names. */
static void set_build_key(build_cfg_t *b, const build_key_t *k, double v)
{
    char *field = (char *)b + k->offset;
    if (k->type == 'i')
        *(int *)(void *)field = (int)v;
    else if (k->type == 'l')
        *(long *)(void *)field = (long)v;
    else
        *(double *)(void *)field = v;
}

static void default_build(build_cfg_t *b)
{
    memset(b, 0, sizeof(*b));
    snprintf(b->model, sizeof(b->model), "ASI640MM Pro (double)");
    for (int i = 0; i < N_BUILD_KEYS; i++)
        set_build_key(b, &k_build_keys[i], k_build_keys[i].def);
    b->bins[0] = 1;
    b->bins[1] = 2;
    b->bins[2] = 4;
    b->seed = 640;
    memcpy(b->serial, "DBL00000", 8);
}

static void default_run(run_cfg_t *r)
{
    r->time_scale = 1.0;
    r->ambient_c = 20.0;
    r->panel_flux = 0.0;
    r->vignetting = 0.1;
}

/* ------------------------------------------------------------------------------------------ */
/* random numbers: splitmix64, Box-Muller, Knuth / Gaussian Poisson                            */

typedef struct {
    uint64_t s;
    int has_spare;
    double spare;
} rng_t;

static uint64_t rng_u64(rng_t *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double rng_uniform(rng_t *r) /* open interval (0, 1) */
{
    return ((double)(rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double rng_normal(rng_t *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    double mag = sqrt(-2.0 * log(u1));
    r->spare = mag * sin(TWO_PI * u2);
    r->has_spare = 1;
    return mag * cos(TWO_PI * u2);
}

static double rng_poisson(rng_t *r, double mean)
{
    if (mean <= 0.0)
        return 0.0;
    if (mean < 30.0) {
        double limit = exp(-mean), p = 1.0;
        int k = 0;
        do {
            k++;
            p *= rng_uniform(r);
        } while (p > limit);
        return (double)(k - 1);
    }
    double v = mean + sqrt(mean) * rng_normal(r);
    return v < 0.0 ? 0.0 : v;
}

static void rng_seed(rng_t *r, uint64_t seed)
{
    r->s = seed;
    r->has_spare = 0;
    (void)rng_u64(r);
}

/* ------------------------------------------------------------------------------------------ */
/* camera state                                                                                */

typedef struct {
    int used, present, open, video;
    int id; /* SDK handle; kept (stale) while the camera is removed */
    build_cfg_t cfg;
    unsigned char serial[8], asi_id[8];
    long ctl[DBL_CTL_TYPES];
    int ctl_auto[DBL_CTL_TYPES];
    int roi_w, roi_h, roi_bin, roi_type, start_x, start_y;
    int mode;
    int trig_high[2];
    long trig_delay[2], trig_duration[2];
    /* exposure in flight */
    int status;
    int exp_w, exp_h, exp_bin, exp_type, exp_x, exp_y, exp_dark, exp_fail, exp_stall;
    long exp_gain, exp_offset;
    double exp_start, exp_len, exp_end, exp_temp_start;
    uint16_t *frame; /* finished image (exp_w x exp_h, 16-bit) awaiting download */
    /* cooler: temperature is analytic from the last anchor */
    double t_anchor, temp_anchor;
    /* fixed sensor maps (unbinned) */
    float *dark, *qe, *column, *gx, *gy;
    rng_t rng;
    /* faults */
    long fail_every, remove_after;
    double hang_stop_s, hang_data_s, hang_status_s;
    double reattach_after_s; /* real seconds from a removal to the automatic reattach; 0 = never */
    double reattach_at;      /* real_now() at which a removed camera comes back; 0 = not planned */
    int stall_next;
    /* statistics */
    long n_exposures, n_failed, n_stopped, n_downloads, n_removed, n_hangs, n_opens;
} cam_t;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static build_cfg_t g_build;
static run_cfg_t g_run;
static cam_t g_cams[MAX_CAMS];
static unsigned long g_generation;
static int g_next_id;
static long g_calls, g_hangs_active;
static double g_real0, g_sim0;
static char g_error[256];
static char g_version[64] = DBL_VERSION;

static double real_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double sim_now(void)
{
    return g_sim0 + (real_now() - g_real0) * g_run.time_scale;
}

static void sleep_real(double seconds)
{
    if (seconds <= 0.0)
        return;
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* ---- cooler ---- */

static double cooler_equilibrium(const cam_t *c)
{
    if (!c->cfg.cooled || !c->ctl[DBL_CTL_COOLER_ON])
        return g_run.ambient_c;
    double floor_c = g_run.ambient_c - c->cfg.max_delta_c;
    double target = (double)c->ctl[DBL_CTL_TARGET_TEMP];
    return target > floor_c ? target : floor_c;
}

static double cam_temperature(const cam_t *c, double t)
{
    double eq = cooler_equilibrium(c);
    double dt = t - c->t_anchor;
    if (dt < 0.0)
        dt = 0.0;
    return eq + (c->temp_anchor - eq) * exp(-dt / c->cfg.tau_s);
}

/* Call before anything that changes the equilibrium (cooler on/off, target, ambient). */
static void cooler_anchor(cam_t *c)
{
    double t = sim_now();
    c->temp_anchor = cam_temperature(c, t);
    c->t_anchor = t;
}

static double cooler_power(const cam_t *c)
{
    if (!c->cfg.cooled || !c->ctl[DBL_CTL_COOLER_ON])
        return 0.0;
    double eq = cooler_equilibrium(c);
    double hold = 100.0 * (g_run.ambient_c - eq) / c->cfg.max_delta_c;
    double excess = cam_temperature(c, sim_now()) - eq;
    double p = hold + 100.0 * excess / c->cfg.proportional_c;
    return p < 0.0 ? 0.0 : (p > 100.0 ? 100.0 : p);
}

/* ---- controls ---- */

static int control_caps(const cam_t *c, int type, dbl_control_caps_t *o)
{
    const build_cfg_t *b = &c->cfg;
    const char *name = NULL, *desc = NULL;
    long lo = 0, hi = 0, def = 0;
    int autoable = 0, writable = 1;
    switch (type) {
    case DBL_CTL_GAIN:
        name = "Gain", desc = "Analogue gain, 0.1 dB steps", hi = b->gain_max, def = b->unity_gain;
        autoable = 1;
        break;
    case DBL_CTL_EXPOSURE:
        name = "Exposure", desc = "Exposure time (us)", lo = b->min_exposure_us;
        hi = b->max_exposure_us, def = 10000, autoable = 1;
        break;
    case DBL_CTL_OFFSET:
        name = "Offset", desc = "Black level offset", hi = b->offset_max, def = 10;
        break;
    case DBL_CTL_BANDWIDTH:
        name = "BandWidth", desc = "USB bandwidth limit (%)", lo = 40, hi = 100, def = 50;
        autoable = 1;
        break;
    case DBL_CTL_FLIP:
        name = "Flip", desc = "Flip: 0 none, 1 horizontal, 2 vertical, 3 both", hi = 3;
        break;
    case DBL_CTL_HARDWARE_BIN:
        name = "HardwareBin", desc = "Bin in hardware", hi = 1;
        break;
    case DBL_CTL_HIGH_SPEED:
        name = "HighSpeedMode", desc = "High speed read-out", hi = 1;
        break;
    case DBL_CTL_TEMPERATURE:
        name = "Temperature", desc = "Sensor temperature (C x 10)", lo = -500, hi = 1000;
        writable = 0;
        break;
    case DBL_CTL_COOLER_POWER:
        if (!b->cooled)
            return 0;
        name = "CoolPowerPerc", desc = "Cooler power (%)", hi = 100, writable = 0;
        break;
    case DBL_CTL_TARGET_TEMP:
        if (!b->cooled)
            return 0;
        name = "TargetTemp", desc = "Cooler target (C)", lo = -40, hi = 30, def = 0;
        break;
    case DBL_CTL_COOLER_ON:
        if (!b->cooled)
            return 0;
        name = "CoolerOn", desc = "Cooler switch", hi = 1;
        break;
    case DBL_CTL_ANTI_DEW:
        if (!b->cooled)
            return 0;
        name = "AntiDewHeater", desc = "Window heater", hi = 1;
        break;
    case DBL_CTL_MONO_BIN:
        if (b->bayer < 0)
            return 0;
        name = "Mono bin", desc = "Colour binning adds all four colours (mono image)", hi = 1;
        break;
    default:
        return 0;
    }
    if (o) {
        memset(o, 0, sizeof(*o));
        snprintf(o->name, sizeof(o->name), "%s", name);
        snprintf(o->description, sizeof(o->description), "%s", desc);
        o->min_value = lo;
        o->max_value = hi;
        o->default_value = def;
        o->auto_supported = autoable;
        o->writable = writable;
        o->control_type = type;
    }
    return 1;
}

static const int k_control_order[] = {
    DBL_CTL_GAIN,        DBL_CTL_EXPOSURE,     DBL_CTL_OFFSET,      DBL_CTL_BANDWIDTH,
    DBL_CTL_FLIP,        DBL_CTL_HARDWARE_BIN, DBL_CTL_HIGH_SPEED,  DBL_CTL_TEMPERATURE,
    DBL_CTL_COOLER_POWER, DBL_CTL_TARGET_TEMP, DBL_CTL_COOLER_ON,   DBL_CTL_ANTI_DEW,
    DBL_CTL_MONO_BIN,
};
#define N_CONTROL_ORDER ((int)(sizeof(k_control_order) / sizeof(k_control_order[0])))

static void reset_controls(cam_t *c)
{
    dbl_control_caps_t caps;
    memset(c->ctl, 0, sizeof(c->ctl));
    memset(c->ctl_auto, 0, sizeof(c->ctl_auto));
    for (int i = 0; i < N_CONTROL_ORDER; i++)
        if (control_caps(c, k_control_order[i], &caps))
            c->ctl[k_control_order[i]] = caps.default_value;
}

static void reset_roi(cam_t *c)
{
    c->roi_w = c->cfg.width - c->cfg.width % 8;
    c->roi_h = c->cfg.height - c->cfg.height % 2;
    c->roi_bin = 1;
    c->roi_type = DBL_IMG_RAW8; /* the SDK's power-on format */
    c->start_x = (c->cfg.width - c->roi_w) / 2;
    c->start_y = (c->cfg.height - c->roi_h) / 2;
}

static int bin_supported(const cam_t *c, int bin)
{
    for (int i = 0; i < 16 && c->cfg.bins[i]; i++)
        if (c->cfg.bins[i] == bin)
            return 1;
    return 0;
}

/* ---- sensor maps ---- */

static void free_maps(cam_t *c)
{
    free(c->dark);
    free(c->qe);
    free(c->column);
    free(c->gx);
    free(c->gy);
    free(c->frame);
    c->dark = c->qe = c->column = c->gx = c->gy = NULL;
    c->frame = NULL;
}

static int build_maps(cam_t *c, int slot)
{
    const build_cfg_t *b = &c->cfg;
    size_t w = (size_t)b->width, h = (size_t)b->height, n = w * h;
    c->dark = malloc(n * sizeof(float));
    c->qe = malloc(n * sizeof(float));
    c->column = malloc(w * sizeof(float));
    c->gx = malloc(w * sizeof(float));
    c->gy = malloc(h * sizeof(float));
    if (!c->dark || !c->qe || !c->column || !c->gx || !c->gy) {
        free_maps(c);
        return -1;
    }
    rng_t truth;
    rng_seed(&truth, b->seed * 1000003ULL + (uint64_t)slot * 7919ULL + 1ULL);
    double s = b->dark_spread;
    for (size_t i = 0; i < n; i++) {
        c->dark[i] = (float)exp(s * rng_normal(&truth) - 0.5 * s * s);
        c->qe[i] = (float)(1.0 + b->prnu * rng_normal(&truth));
    }
    size_t n_hot = (size_t)llround((double)n * b->hot_fraction);
    if (n_hot < 1)
        n_hot = 1;
    double llo = log(b->hot_min), lhi = log(b->hot_max);
    for (size_t k = 0; k < n_hot; k++) {
        size_t i = (size_t)(rng_uniform(&truth) * (double)n);
        c->dark[i < n ? i : n - 1] = (float)exp(llo + (lhi - llo) * rng_uniform(&truth));
    }
    size_t n_dead = (size_t)llround((double)n * b->dead_fraction);
    for (size_t k = 0; k < n_dead; k++) {
        size_t i = (size_t)(rng_uniform(&truth) * (double)n);
        c->qe[i < n ? i : n - 1] = 0.0f;
    }
    size_t n_cold = (size_t)llround((double)n * b->cold_fraction);
    for (size_t k = 0; k < n_cold; k++) {
        size_t i = (size_t)(rng_uniform(&truth) * (double)n);
        c->qe[i < n ? i : n - 1] = (float)(0.3 + 0.4 * rng_uniform(&truth));
    }
    double glow_len = b->glow_length_frac * (double)w;
    if (glow_len < 1.0)
        glow_len = 1.0;
    for (size_t x = 0; x < w; x++) {
        c->column[x] = (float)(b->column_sigma_adu * rng_normal(&truth));
        c->gx[x] = (float)exp(-((double)(w - 1 - x)) / glow_len);
    }
    for (size_t y = 0; y < h; y++) {
        double d = ((double)y - 0.5 * (double)h) / (0.3 * (double)h);
        c->gy[y] = (float)(1.0 + 0.5 * exp(-d * d));
    }
    rng_seed(&c->rng, b->seed * 2654435761ULL + (uint64_t)slot + 17ULL);
    return 0;
}

/* ---- cameras ---- */

static void make_serial(const build_cfg_t *b, int slot, unsigned char out[8])
{
    memcpy(out, b->serial, 8);
    out[7] = (unsigned char)(out[7] + slot + 1);
}

static void drop_exposure(cam_t *c)
{
    free(c->frame);
    c->frame = NULL;
    c->status = DBL_EXP_IDLE;
}

static void do_remove(cam_t *c)
{
    if (!c->present)
        return;
    cooler_anchor(c);
    c->ctl[DBL_CTL_COOLER_ON] = 0; /* unpowered: the sensor drifts back to ambient */
    drop_exposure(c);
    c->present = 0;
    c->open = 0;
    c->video = 0;
    c->n_removed++;
    c->reattach_at = c->reattach_after_s > 0.0 ? real_now() + c->reattach_after_s : 0.0;
}

static void do_reattach(cam_t *c)
{
    if (c->present || !c->used)
        return;
    c->reattach_at = 0.0;
    cooler_anchor(c);
    c->present = 1;
    c->open = 0;
    c->id = g_next_id++; /* a new handle, as after a USB re-enumeration */
    reset_controls(c);   /* power cycle: controls back to their defaults */
    reset_roi(c);
}

static int rebuild(void)
{
    g_generation++;
    g_next_id = 0;
    g_calls = 0;
    for (int i = 0; i < MAX_CAMS; i++) {
        free_maps(&g_cams[i]);
        memset(&g_cams[i], 0, sizeof(g_cams[i]));
    }
    int n = g_build.cameras;
    for (int i = 0; i < n; i++) {
        cam_t *c = &g_cams[i];
        c->cfg = g_build;
        if (build_maps(c, i) != 0) {
            snprintf(g_error, sizeof(g_error), "out of memory building camera %d", i);
            return -1;
        }
        c->used = c->present = 1;
        c->id = g_next_id++;
        make_serial(&g_build, i, c->serial);
        reset_controls(c);
        reset_roi(c);
        c->t_anchor = sim_now();
        c->temp_anchor = g_run.ambient_c;
    }
    return 0;
}

static int configure_locked(const char *text);

/* First use: default cameras, then $ASI_DOUBLE_CONFIG (same syntax as ASIDoubleConfigure) so a
 * test can configure a double loaded by another process. */
static void init_once(void)
{
    default_build(&g_build);
    default_run(&g_run);
    g_real0 = real_now();
    g_sim0 = 0.0;
    rebuild();
    const char *env = getenv("ASI_DOUBLE_CONFIG");
    if (env && *env && configure_locked(env) != 0)
        fprintf(stderr, "asi_double: ASI_DOUBLE_CONFIG rejected: %s\n", g_error);
}

/* Removed cameras whose automatic reattach time has come are plugged in again. */
static void reattach_due(void)
{
    double now = real_now();
    for (int i = 0; i < MAX_CAMS; i++) {
        cam_t *c = &g_cams[i];
        if (c->used && !c->present && c->reattach_at > 0.0 && now >= c->reattach_at)
            do_reattach(c);
    }
}

/* Every SDK entry point: count the call, run the remove_after countdowns and due reattaches. */
static void enter(void)
{
    g_calls++;
    reattach_due();
    for (int i = 0; i < MAX_CAMS; i++) {
        cam_t *c = &g_cams[i];
        if (c->used && c->present && c->remove_after > 0 && --c->remove_after == 0)
            do_remove(c);
    }
}

#define ENTER()                                                                                   \
    do {                                                                                          \
        pthread_once(&g_once, init_once);                                                         \
        pthread_mutex_lock(&g_lock);                                                              \
        enter();                                                                                  \
    } while (0)
#define LEAVE(code)                                                                               \
    do {                                                                                          \
        pthread_mutex_unlock(&g_lock);                                                            \
        return (code);                                                                            \
    } while (0)

static cam_t *find_cam(int id, int need_open, int *err)
{
    for (int i = 0; i < MAX_CAMS; i++) {
        cam_t *c = &g_cams[i];
        if (!c->used || c->id != id)
            continue;
        if (!c->present) {
            *err = DBL_ERR_CAMERA_REMOVED;
            return NULL;
        }
        if (need_open && !c->open) {
            *err = DBL_ERR_CAMERA_CLOSED;
            return NULL;
        }
        *err = DBL_OK;
        return c;
    }
    *err = DBL_ERR_INVALID_ID;
    return NULL;
}

/* The preamble of every call on a camera: lock, count the call, find the camera by its id (an
 * open one when ``need_open``) or return the SDK's error. Declares ``c`` and ``c_err``. */
#define FIND_CAM(c, id, need_open)                                                                \
    int c##_err;                                                                                  \
    ENTER();                                                                                      \
    cam_t *c = find_cam((id), (need_open), &c##_err);                                             \
    if (!c)                                                                                       \
    LEAVE(c##_err)
#define OPEN_CAM(c, id) FIND_CAM(c, id, 1)

/* Store ``value`` through an optional output pointer. */
#define OUT(ptr, value)                                                                           \
    do {                                                                                          \
        if (ptr)                                                                                  \
            *(ptr) = (value);                                                                     \
    } while (0)

static cam_t *cam_by_index(int index)
{
    int k = 0;
    for (int i = 0; i < MAX_CAMS; i++) {
        cam_t *c = &g_cams[i];
        if (c->used && c->present) {
            if (k == index)
                return c;
            k++;
        }
    }
    return NULL;
}

/* ---- exposures and frames ---- */

static double e_per_adu_native(const build_cfg_t *b, long gain)
{
    return pow(10.0, -((double)gain - (double)b->unity_gain) / 200.0);
}

static double read_noise_e(const build_cfg_t *b, long gain)
{
    return b->rn_high_e +
           (b->rn_low_e - b->rn_high_e) * exp(-(double)gain / (0.5 * (double)b->unity_gain));
}

static void snapshot_exposure(cam_t *c, int is_dark, double start)
{
    c->exp_w = c->roi_w;
    c->exp_h = c->roi_h;
    c->exp_bin = c->roi_bin;
    c->exp_type = c->roi_type;
    c->exp_x = c->start_x;
    c->exp_y = c->start_y;
    c->exp_dark = is_dark ? 1 : 0;
    c->exp_gain = c->ctl[DBL_CTL_GAIN];
    c->exp_offset = c->ctl[DBL_CTL_OFFSET];
    c->exp_start = start;
    c->exp_len = (double)c->ctl[DBL_CTL_EXPOSURE] * 1e-6;
    double bw = (double)(c->ctl[DBL_CTL_BANDWIDTH] > 0 ? c->ctl[DBL_CTL_BANDWIDTH] : 100);
    c->exp_end = start + c->exp_len + c->cfg.readout_s * 100.0 / bw;
    c->exp_temp_start = cam_temperature(c, start);
}

/* 0 red, 1 green, 2 blue: the filter over unbinned pixel (row, col) for ASI_BAYER_PATTERN
 * `bayer` (RG=0, BG=1, GR=2, GB=3: the colours of pixels (0, 0) and (0, 1)). */
static int pixel_colour(int bayer, int row, int col)
{
    static const int cell[4][4] = {{0, 1, 1, 2}, {2, 1, 1, 0}, {1, 0, 2, 1}, {1, 2, 0, 1}};
    return cell[bayer & 3][(row & 1) * 2 + (col & 1)];
}

/* Makes the image of the exposure described by the exp_* fields. Returns NULL on OOM. */
static uint16_t *render_frame(cam_t *c)
{
    const build_cfg_t *b = &c->cfg;
    int bin = c->exp_bin, w = c->exp_w, h = c->exp_h, W = b->width;
    int x0 = c->exp_x * bin, y0 = c->exp_y * bin;
    double nb = (double)(bin * bin), t = c->exp_len;
    double temp = 0.5 * (c->exp_temp_start + cam_temperature(c, c->exp_start + c->exp_len));
    double dscale = b->dark0_e_s * pow(2.0, temp / b->dark_doubling_c);
    double flux = c->exp_dark ? 0.0 : g_run.panel_flux;
    double cx = 0.5 * (b->width - 1), cy = 0.5 * (b->height - 1), r2n = cx * cx + cy * cy;
    /* A colour sensor bins by colour unless MonoBin is on: binned pixel (i, j) averages the
     * bin x bin pixels of its own 2x2-cell position, so the image stays a mosaic. */
    int colour = b->bayer >= 0, by_colour = colour && bin > 1 && !c->ctl[DBL_CTL_MONO_BIN];
    float *buf = malloc((size_t)w * (size_t)h * sizeof(float));
    uint16_t *out = malloc((size_t)w * (size_t)h * sizeof(uint16_t));
    if (!buf || !out) {
        free(buf);
        free(out);
        return NULL;
    }
    for (int i = 0; i < h; i++) {
        for (int j = 0; j < w; j++) {
            double dsum = 0.0, gsum = 0.0, lsum = 0.0;
            for (int di = 0; di < bin; di++) {
                int row = y0 + (by_colour ? ((i / 2) * bin + di) * 2 + i % 2 : i * bin + di);
                for (int dj = 0; dj < bin; dj++) {
                    int col = x0 + (by_colour ? ((j / 2) * bin + dj) * 2 + j % 2 : j * bin + dj);
                    size_t idx = (size_t)row * (size_t)W + (size_t)col;
                    dsum += c->dark[idx];
                    gsum += (double)c->gx[col] * (double)c->gy[row];
                    if (flux > 0.0) {
                        double dx = col - cx, dy = row - cy;
                        double cfa = colour ? b->cfa[pixel_colour(b->bayer, row, col)] : 1.0;
                        lsum += cfa * c->qe[idx] *
                                (1.0 - g_run.vignetting * (dx * dx + dy * dy) / r2n);
                    }
                }
            }
            buf[(size_t)i * w + j] = (float)(t * (dsum * dscale + gsum * b->glow_e_s + lsum * flux) / nb);
        }
    }
    /* cosmic rays over the read-out area */
    double area = (double)w * bin * (double)h * bin * (b->pixel_um * 1e-4) * (b->pixel_um * 1e-4);
    int hits = (int)rng_poisson(&c->rng, b->cosmic_per_cm2_min * area * t / 60.0);
    for (int k = 0; k < hits; k++) {
        int r = (int)(rng_uniform(&c->rng) * h), q = (int)(rng_uniform(&c->rng) * w);
        double energy = exp(log(3000.0) + 0.8 * rng_normal(&c->rng)) / nb;
        int len = 1 + (int)(rng_uniform(&c->rng) * 3.0);
        int down = rng_uniform(&c->rng) < 0.5;
        for (int s = 0; s < len; s++) {
            int rr = r + (down ? s : 0), qq = q + (down ? 0 : s);
            if (rr < h && qq < w)
                buf[(size_t)rr * w + qq] += (float)(energy / len);
        }
    }
    int step = 1 << (16 - b->bit_depth);
    double k_adu = (double)step / e_per_adu_native(b, c->exp_gain); /* ADU16 per electron */
    double rn = read_noise_e(b, c->exp_gain) / bin;
    double pedestal = (double)c->exp_offset * b->pedestal_per_offset;
    double full = b->full_well_e, top = (double)((1 << b->bit_depth) - 1);
    for (int j = 0; j < w; j++) {
        double colv = 0.0;
        for (int dj = 0; dj < bin; dj++)
            colv += c->column[x0 + (by_colour ? ((j / 2) * bin + dj) * 2 + j % 2 : j * bin + dj)];
        colv /= bin;
        for (int i = 0; i < h; i++) {
            size_t idx = (size_t)i * w + j;
            double mean = buf[idx] < full ? buf[idx] : full;
            double e = rng_poisson(&c->rng, mean * nb) / nb + rn * rng_normal(&c->rng);
            double native = rint((e * k_adu + colv + pedestal) / step);
            native = native < 0.0 ? 0.0 : (native > top ? top : native);
            out[idx] = (uint16_t)(native * step);
        }
    }
    free(buf);
    return out;
}

/* Moves a finished exposure to SUCCESS (rendering the frame) or FAILED. Caller holds the lock. */
static void update_exposure(cam_t *c)
{
    if (c->status != DBL_EXP_WORKING || c->exp_stall || sim_now() < c->exp_end)
        return;
    if (c->exp_fail) {
        c->status = DBL_EXP_FAILED;
        c->n_failed++;
        return;
    }
    free(c->frame);
    c->frame = render_frame(c);
    c->status = c->frame ? DBL_EXP_SUCCESS : DBL_EXP_FAILED;
}

static void copy_out(const uint16_t *src, int type, size_t npix, unsigned char *dst)
{
    if (type == DBL_IMG_RAW16) {
        for (size_t i = 0; i < npix; i++) { /* little-endian, as the SDK delivers */
            dst[2 * i] = (unsigned char)(src[i] & 0xFF);
            dst[2 * i + 1] = (unsigned char)(src[i] >> 8);
        }
    } else {
        for (size_t i = 0; i < npix; i++)
            dst[i] = (unsigned char)(src[i] >> 8);
    }
}

static size_t frame_bytes(int w, int h, int type)
{
    return (size_t)w * (size_t)h * (type == DBL_IMG_RAW16 ? 2u : 1u);
}

/* Sleeps `seconds` outside the lock for a hang fault; returns with the lock held and *cam
 * re-validated (NULL and *err set when the camera went away or the double was reset). */
static cam_t *hang_unlocked(double seconds, int id, int *err)
{
    unsigned long gen = g_generation;
    g_hangs_active++;
    pthread_mutex_unlock(&g_lock);
    sleep_real(seconds);
    pthread_mutex_lock(&g_lock);
    g_hangs_active--;
    if (gen != g_generation) {
        *err = DBL_ERR_CAMERA_REMOVED;
        return NULL;
    }
    return find_cam(id, 1, err);
}

/* A one-shot hang fault armed in *armed (seconds: hang_stop_s, hang_status_s or hang_data_s of
 * camera c): disarmed, counted and hung through hang_unlocked(). Returns c when none is armed,
 * else hang_unlocked()'s result (NULL and *err set when the camera went away). */
static cam_t *take_hang(cam_t *c, double *armed, int id, int *err)
{
    double seconds = *armed;
    if (seconds <= 0.0)
        return c;
    *armed = 0.0;
    c->n_hangs++;
    return hang_unlocked(seconds, id, err);
}

/* A call that changes nothing on an open camera: ``answer``, or the camera's error. */
static int open_cam_answer(int id, int answer)
{
    OPEN_CAM(c, id);
    (void)c;
    LEAVE(answer);
}

/* ------------------------------------------------------------------------------------------ */
/* SDK surface                                                                                 */

int ASIGetNumOfConnectedCameras(void)
{
    ENTER();
    int n = 0;
    for (int i = 0; i < MAX_CAMS; i++)
        n += g_cams[i].used && g_cams[i].present;
    LEAVE(n);
}

int ASIGetProductIDs(int *pids)
{
    ENTER();
    if (pids)
        pids[0] = 0x2600;
    LEAVE(1);
}

int ASICameraCheck(int vid, int pid)
{
    (void)pid;
    ENTER();
    LEAVE(vid == 0x03C3);
}

static void fill_info(const cam_t *c, dbl_camera_info_t *o)
{
    const build_cfg_t *b = &c->cfg;
    memset(o, 0, sizeof(*o));
    if (strncmp(b->model, "ZWO ", 4) == 0)
        snprintf(o->name, sizeof(o->name), "%s", b->model);
    else
        snprintf(o->name, sizeof(o->name), "ZWO %.59s", b->model);
    o->camera_id = c->id;
    o->max_height = b->height;
    o->max_width = b->width;
    for (int i = 0; i < 16; i++)
        o->bins[i] = b->bins[i];
    o->is_color = b->bayer >= 0;
    o->bayer = b->bayer >= 0 ? b->bayer : 0;
    int nf = 0;
    o->formats[nf++] = DBL_IMG_RAW8;
    if (o->is_color)
        o->formats[nf++] = DBL_IMG_RGB24; /* offered, as by real colour cameras; not rendered */
    o->formats[nf++] = DBL_IMG_RAW16;
    if (o->is_color)
        o->formats[nf++] = DBL_IMG_Y8;
    o->formats[nf] = DBL_IMG_END;
    o->pixel_um = b->pixel_um;
    o->st4 = 0;
    o->cooled = b->cooled;
    o->usb3_host = b->usb3;
    o->usb3_camera = b->usb3;
    o->e_per_adu = (float)e_per_adu_native(b, 0);
    o->bit_depth = b->bit_depth;
}

int ASIGetCameraProperty(dbl_camera_info_t *info, int index)
{
    ENTER();
    cam_t *c = cam_by_index(index);
    if (!c || !info)
        LEAVE(DBL_ERR_INVALID_INDEX);
    fill_info(c, info);
    LEAVE(DBL_OK);
}

int ASIGetCameraPropertyByID(int id, dbl_camera_info_t *info)
{
    FIND_CAM(c, id, 0);
    if (info)
        fill_info(c, info);
    LEAVE(DBL_OK);
}

int ASIOpenCamera(int id)
{
    FIND_CAM(c, id, 0);
    c->open = 1;
    c->n_opens++;
    LEAVE(DBL_OK);
}

int ASIInitCamera(int id)
{
    OPEN_CAM(c, id);
    drop_exposure(c);
    c->video = 0;
    reset_roi(c);
    LEAVE(DBL_OK);
}

int ASICloseCamera(int id)
{
    int err;
    ENTER();
    cam_t *c = find_cam(id, 0, &err);
    if (!c)
        LEAVE(err == DBL_ERR_CAMERA_REMOVED ? DBL_OK : err);
    drop_exposure(c);
    c->video = 0;
    c->open = 0;
    LEAVE(DBL_OK);
}

int ASIGetNumOfControls(int id, int *count)
{
    OPEN_CAM(c, id);
    int n = 0;
    for (int i = 0; i < N_CONTROL_ORDER; i++)
        n += control_caps(c, k_control_order[i], NULL);
    OUT(count, n);
    LEAVE(DBL_OK);
}

int ASIGetControlCaps(int id, int index, dbl_control_caps_t *caps)
{
    OPEN_CAM(c, id);
    int k = 0;
    for (int i = 0; i < N_CONTROL_ORDER; i++) {
        if (!control_caps(c, k_control_order[i], NULL))
            continue;
        if (k++ == index) {
            if (caps)
                control_caps(c, k_control_order[i], caps);
            LEAVE(DBL_OK);
        }
    }
    LEAVE(DBL_ERR_INVALID_CONTROL_TYPE);
}

int ASIGetControlValue(int id, int type, long *value, int *is_auto)
{
    OPEN_CAM(c, id);
    if (type < 0 || type >= DBL_CTL_TYPES || !control_caps(c, type, NULL))
        LEAVE(DBL_ERR_INVALID_CONTROL_TYPE);
    long v = c->ctl[type];
    if (type == DBL_CTL_TEMPERATURE)
        v = lround(10.0 * cam_temperature(c, sim_now()));
    else if (type == DBL_CTL_COOLER_POWER)
        v = lround(cooler_power(c));
    OUT(value, v);
    OUT(is_auto, c->ctl_auto[type]);
    LEAVE(DBL_OK);
}

int ASISetControlValue(int id, int type, long value, int is_auto)
{
    OPEN_CAM(c, id);
    dbl_control_caps_t caps;
    if (type < 0 || type >= DBL_CTL_TYPES || !control_caps(c, type, &caps))
        LEAVE(DBL_ERR_INVALID_CONTROL_TYPE);
    if (!caps.writable)
        LEAVE(DBL_ERR_GENERAL_ERROR);
    /* Out-of-range values are clamped and reported as success, as the SDK documents. */
    if (value < caps.min_value)
        value = caps.min_value;
    if (value > caps.max_value)
        value = caps.max_value;
    if (type == DBL_CTL_COOLER_ON || type == DBL_CTL_TARGET_TEMP)
        cooler_anchor(c);
    c->ctl[type] = value;
    c->ctl_auto[type] = (is_auto && caps.auto_supported) ? 1 : 0;
    LEAVE(DBL_OK);
}

int ASISetROIFormat(int id, int width, int height, int bin, int img_type)
{
    OPEN_CAM(c, id);
    if (c->video)
        LEAVE(DBL_ERR_VIDEO_MODE_ACTIVE);
    if (c->status == DBL_EXP_WORKING)
        LEAVE(DBL_ERR_EXPOSURE_IN_PROGRESS);
    if (img_type != DBL_IMG_RAW8 && img_type != DBL_IMG_RAW16)
        LEAVE(DBL_ERR_INVALID_IMGTYPE);
    if (!bin_supported(c, bin) || width < 8 || height < 2 || width % 8 || height % 2 ||
        (long)width * bin > c->cfg.width || (long)height * bin > c->cfg.height)
        LEAVE(DBL_ERR_INVALID_SIZE);
    c->roi_w = width;
    c->roi_h = height;
    c->roi_bin = bin;
    c->roi_type = img_type;
    /* A new format is centred on the sensor, as the SDK does. */
    c->start_x = (c->cfg.width / bin - width) / 2;
    c->start_y = (c->cfg.height / bin - height) / 2;
    LEAVE(DBL_OK);
}

int ASIGetROIFormat(int id, int *width, int *height, int *bin, int *img_type)
{
    OPEN_CAM(c, id);
    OUT(width, c->roi_w);
    OUT(height, c->roi_h);
    OUT(bin, c->roi_bin);
    OUT(img_type, c->roi_type);
    LEAVE(DBL_OK);
}

int ASISetStartPos(int id, int x, int y)
{
    OPEN_CAM(c, id);
    if (x < 0 || y < 0 || x + c->roi_w > c->cfg.width / c->roi_bin ||
        y + c->roi_h > c->cfg.height / c->roi_bin)
        LEAVE(DBL_ERR_OUTOF_BOUNDARY);
    c->start_x = x;
    c->start_y = y;
    LEAVE(DBL_OK);
}

int ASIGetStartPos(int id, int *x, int *y)
{
    OPEN_CAM(c, id);
    OUT(x, c->start_x);
    OUT(y, c->start_y);
    LEAVE(DBL_OK);
}

int ASIGetDroppedFrames(int id, int *dropped)
{
    OPEN_CAM(c, id);
    OUT(dropped, 0);
    LEAVE(DBL_OK);
}

int ASIEnableDarkSubtract(int id, char *bmp_path)
{
    OPEN_CAM(c, id);
    if (!bmp_path || access(bmp_path, R_OK) != 0)
        LEAVE(DBL_ERR_INVALID_PATH);
    LEAVE(DBL_ERR_INVALID_FILEFORMAT); /* the double never accepts a dark file */
}

int ASIDisableDarkSubtract(int id)
{
    return open_cam_answer(id, DBL_OK);
}

int ASIStartVideoCapture(int id)
{
    OPEN_CAM(c, id);
    if (c->status == DBL_EXP_WORKING)
        LEAVE(DBL_ERR_EXPOSURE_IN_PROGRESS);
    c->video = 1;
    LEAVE(DBL_OK);
}

int ASIStopVideoCapture(int id)
{
    OPEN_CAM(c, id);
    c->video = 0;
    LEAVE(DBL_OK);
}

int ASIGetVideoData(int id, unsigned char *buffer, long size, int wait_ms)
{
    OPEN_CAM(c, id);
    if (!c->video)
        LEAVE(DBL_ERR_INVALID_SEQUENCE);
    size_t need = frame_bytes(c->roi_w, c->roi_h, c->roi_type);
    if (!buffer || size < 0 || (size_t)size < need)
        LEAVE(DBL_ERR_BUFFER_TOO_SMALL);
    double real_exp = (double)c->ctl[DBL_CTL_EXPOSURE] * 1e-6 / g_run.time_scale;
    if (wait_ms >= 0 && wait_ms * 1e-3 < real_exp) {
        c = hang_unlocked(wait_ms * 1e-3, id, &c_err);
        LEAVE(c ? DBL_ERR_TIMEOUT : c_err);
    }
    c = hang_unlocked(real_exp, id, &c_err);
    if (!c)
        LEAVE(c_err);
    if (!c->video)
        LEAVE(DBL_ERR_INVALID_SEQUENCE);
    snapshot_exposure(c, 0, sim_now() - (double)c->ctl[DBL_CTL_EXPOSURE] * 1e-6);
    uint16_t *img = render_frame(c);
    if (!img)
        LEAVE(DBL_ERR_GENERAL_ERROR);
    copy_out(img, c->exp_type, (size_t)c->exp_w * (size_t)c->exp_h, buffer);
    free(img);
    LEAVE(DBL_OK);
}

int ASIPulseGuideOn(int id, int direction)
{
    (void)direction;
    return open_cam_answer(id, DBL_OK);
}

int ASIPulseGuideOff(int id, int direction)
{
    (void)direction;
    return open_cam_answer(id, DBL_OK);
}

int ASIStartExposure(int id, int is_dark)
{
    OPEN_CAM(c, id);
    if (c->video)
        LEAVE(DBL_ERR_VIDEO_MODE_ACTIVE);
    if (c->status == DBL_EXP_WORKING)
        LEAVE(DBL_ERR_EXPOSURE_IN_PROGRESS);
    drop_exposure(c);
    c->n_exposures++;
    snapshot_exposure(c, is_dark, sim_now());
    c->exp_fail = c->fail_every > 0 && c->n_exposures % c->fail_every == 0;
    c->exp_stall = c->stall_next;
    c->stall_next = 0;
    c->status = DBL_EXP_WORKING;
    LEAVE(DBL_OK);
}

int ASIStopExposure(int id)
{
    OPEN_CAM(c, id);
    c = take_hang(c, &c->hang_stop_s, id, &c_err);
    if (!c)
        LEAVE(c_err);
    if (c->status == DBL_EXP_WORKING) {
        c->status = DBL_EXP_FAILED;
        c->n_stopped++;
    } else if (c->status == DBL_EXP_SUCCESS) {
        drop_exposure(c);
    }
    LEAVE(DBL_OK);
}

int ASIGetExpStatus(int id, int *status)
{
    OPEN_CAM(c, id);
    c = take_hang(c, &c->hang_status_s, id, &c_err);
    if (!c)
        LEAVE(c_err);
    update_exposure(c);
    OUT(status, c->status);
    LEAVE(DBL_OK);
}

int ASIGetDataAfterExp(int id, unsigned char *buffer, long size)
{
    OPEN_CAM(c, id);
    update_exposure(c);
    if (c->status != DBL_EXP_SUCCESS || !c->frame)
        LEAVE(DBL_ERR_TIMEOUT);
    size_t npix = (size_t)c->exp_w * (size_t)c->exp_h;
    if (!buffer || size < 0 || (size_t)size < frame_bytes(c->exp_w, c->exp_h, c->exp_type))
        LEAVE(DBL_ERR_BUFFER_TOO_SMALL);
    /* Take the frame out of the camera first: a download that hangs must not see a later one. */
    uint16_t *img = c->frame;
    int type = c->exp_type;
    c->frame = NULL;
    c->status = DBL_EXP_IDLE;
    c = take_hang(c, &c->hang_data_s, id, &c_err);
    if (!c) {
        free(img);
        LEAVE(c_err);
    }
    copy_out(img, type, npix, buffer);
    free(img);
    c->n_downloads++;
    LEAVE(DBL_OK);
}

/* Copies the 8 bytes at ``offset`` in camera ``id`` (its ASI ID or serial number) to *out. */
static int get_id8(int id, size_t offset, dbl_id8_t *out)
{
    OPEN_CAM(c, id);
    if (out)
        memcpy(out->bytes, (const unsigned char *)c + offset, 8);
    LEAVE(DBL_OK);
}

int ASIGetID(int id, dbl_id8_t *out)
{
    return get_id8(id, offsetof(cam_t, asi_id), out);
}

int ASISetID(int id, dbl_id8_t value)
{
    OPEN_CAM(c, id);
    memcpy(c->asi_id, value.bytes, 8);
    LEAVE(DBL_OK);
}

int ASIGetSerialNumber(int id, dbl_id8_t *out)
{
    return get_id8(id, offsetof(cam_t, serial), out);
}

int ASIGetGainOffset(int id, int *offset_highest_dr, int *offset_unity_gain, int *gain_lowest_rn,
                     int *offset_lowest_rn)
{
    OPEN_CAM(c, id);
    OUT(offset_highest_dr, 10);
    OUT(offset_unity_gain, 30);
    OUT(gain_lowest_rn, c->cfg.unity_gain * 2);
    OUT(offset_lowest_rn, 50);
    LEAVE(DBL_OK);
}

int ASIGetLMHGainOffset(int id, int *low_gain, int *mid_gain, int *high_gain, int *high_offset)
{
    OPEN_CAM(c, id);
    OUT(low_gain, 0);
    OUT(mid_gain, c->cfg.unity_gain);
    OUT(high_gain, c->cfg.unity_gain * 2);
    OUT(high_offset, 50);
    LEAVE(DBL_OK);
}

char *ASIGetSDKVersion(void)
{
    ENTER();
    LEAVE(g_version);
}

int ASIGetCameraSupportMode(int id, dbl_modes_t *modes)
{
    OPEN_CAM(c, id);
    if (modes) {
        for (int i = 0; i < 16; i++)
            modes->modes[i] = DBL_MODE_END;
        modes->modes[0] = DBL_MODE_NORMAL;
    }
    LEAVE(DBL_OK);
}

int ASIGetCameraMode(int id, int *mode)
{
    OPEN_CAM(c, id);
    OUT(mode, c->mode);
    LEAVE(DBL_OK);
}

int ASISetCameraMode(int id, int mode)
{
    OPEN_CAM(c, id);
    if (c->status == DBL_EXP_WORKING || c->video)
        LEAVE(DBL_ERR_INVALID_SEQUENCE);
    if (mode != DBL_MODE_NORMAL)
        LEAVE(DBL_ERR_INVALID_MODE);
    c->mode = mode;
    LEAVE(DBL_OK);
}

int ASISendSoftTrigger(int id, int start)
{
    (void)start;
    return open_cam_answer(id, DBL_ERR_INVALID_MODE);
}

int ASISetTriggerOutputIOConf(int id, int pin, int pin_high, long delay_us, long duration_us)
{
    OPEN_CAM(c, id);
    if (pin < 0 || pin > 1 || delay_us < 0 || delay_us > 2000000000L || duration_us > 2000000000L)
        LEAVE(DBL_ERR_GENERAL_ERROR);
    c->trig_high[pin] = pin_high ? 1 : 0;
    c->trig_delay[pin] = delay_us;
    c->trig_duration[pin] = duration_us;
    LEAVE(DBL_OK);
}

int ASIGetTriggerOutputIOConf(int id, int pin, int *pin_high, long *delay_us, long *duration_us)
{
    OPEN_CAM(c, id);
    if (pin < 0 || pin > 1)
        LEAVE(DBL_ERR_GENERAL_ERROR);
    OUT(pin_high, c->trig_high[pin]);
    OUT(delay_us, c->trig_delay[pin]);
    OUT(duration_us, c->trig_duration[pin]);
    LEAVE(DBL_OK);
}

/* ------------------------------------------------------------------------------------------ */
/* double-only control surface                                                                 */

typedef struct {
    char key[32];
    char value[96];
} token_t;

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int tokenize(const char *text, token_t *tokens, int max)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, ";\n");
        char item[160];
        if (len >= sizeof(item)) {
            snprintf(g_error, sizeof(g_error), "item too long near '%.20s'", p);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        p += len;
        if (*p)
            p++;
        char *t = trim(item);
        if (!*t)
            continue;
        if (n >= max) {
            snprintf(g_error, sizeof(g_error), "too many items");
            return -1;
        }
        char *eq = strchr(t, '=');
        const char *val = "1";
        if (eq) {
            *eq = '\0';
            val = trim(eq + 1);
        }
        char *key = trim(t);
        if (strlen(key) >= sizeof(tokens[n].key) || strlen(val) >= sizeof(tokens[n].value)) {
            snprintf(g_error, sizeof(g_error), "key or value too long: '%.40s'", key);
            return -1;
        }
        snprintf(tokens[n].key, sizeof(tokens[n].key), "%s", key);
        snprintf(tokens[n].value, sizeof(tokens[n].value), "%s", val);
        n++;
    }
    return n;
}

static int parse_double(const token_t *t, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(t->value, &end);
    if (errno || end == t->value || *end || !(v >= lo && v <= hi)) {
        snprintf(g_error, sizeof(g_error), "%s=%s: expected a number in [%g, %g]", t->key,
                 t->value, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_long(const token_t *t, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(t->value, &end, 10);
    if (errno || end == t->value || *end || v < lo || v > hi) {
        snprintf(g_error, sizeof(g_error), "%s=%s: expected an integer in [%ld, %ld]", t->key,
                 t->value, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_bytes8(const token_t *t, unsigned char out[8])
{
    size_t n = strlen(t->value);
    memset(out, 0, 8);
    if (n == 16) {
        int ok = 1;
        for (size_t i = 0; i < 16; i++)
            ok &= isxdigit((unsigned char)t->value[i]) != 0;
        if (ok) {
            for (int i = 0; i < 8; i++) {
                char pair[3] = {t->value[2 * i], t->value[2 * i + 1], '\0'};
                out[i] = (unsigned char)strtoul(pair, NULL, 16);
            }
            return 0;
        }
    }
    if (n > 8) {
        snprintf(g_error, sizeof(g_error), "%s=%s: at most 8 characters (or 16 hex digits)",
                 t->key, t->value);
        return -1;
    }
    memcpy(out, t->value, n);
    return 0;
}

/* Keys that define the cameras. Returns 1 if handled, 0 if not a build key, -1 on error. */
static int apply_build_key(const token_t *t, build_cfg_t *b)
{
    const char *k = t->key;
    double dv;
    long lv;
    if (strcmp(k, "model") == 0) {
        snprintf(b->model, sizeof(b->model), "%.63s", t->value);
        return 1;
    }
    if (strcmp(k, "serial") == 0)
        return parse_bytes8(t, b->serial) ? -1 : 1;
    if (strcmp(k, "bins") == 0) {
        int bins[16] = {0}, n = 0;
        const char *p = t->value;
        while (*p && n < 15) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 1 || v > 8) {
                snprintf(g_error, sizeof(g_error), "bins=%s: expected e.g. 1,2,4", t->value);
                return -1;
            }
            bins[n++] = (int)v;
            p = end;
            while (*p == ',' || isspace((unsigned char)*p))
                p++;
        }
        if (n == 0 || bins[0] != 1) {
            snprintf(g_error, sizeof(g_error), "bins=%s: must start with 1", t->value);
            return -1;
        }
        memcpy(b->bins, bins, sizeof(bins));
        return 1;
    }
    for (int i = 0; i < N_BUILD_KEYS; i++) {
        const build_key_t *bk = &k_build_keys[i];
        if (strcmp(k, bk->key) != 0)
            continue;
        if (bk->type == 'd') {
            if (parse_double(t, bk->lo, bk->hi, &dv))
                return -1;
            set_build_key(b, bk, dv);
        } else {
            if (parse_long(t, (long)bk->lo, (long)bk->hi, &lv))
                return -1;
            set_build_key(b, bk, (double)lv);
        }
        return 1;
    }
    if (strcmp(k, "seed") == 0) {
        if (parse_long(t, 0, 2147483647L, &lv))
            return -1;
        b->seed = (uint64_t)lv;
        return 1;
    }
    return 0;
}

/* Runtime keys. Returns 1 if handled, 0 if not, -1 on error. */
static int apply_run_key(const token_t *t)
{
    const char *k = t->key;
    double dv;
    if (strcmp(k, "time_scale") == 0) {
        if (parse_double(t, 1e-3, 1e7, &dv))
            return -1;
        double now = sim_now();
        g_real0 = real_now();
        g_sim0 = now;
        g_run.time_scale = dv;
        return 1;
    }
    if (strcmp(k, "ambient_c") == 0) {
        if (parse_double(t, -60.0, 60.0, &dv))
            return -1;
        for (int i = 0; i < MAX_CAMS; i++)
            if (g_cams[i].used)
                cooler_anchor(&g_cams[i]);
        g_run.ambient_c = dv;
        return 1;
    }
    if (strcmp(k, "panel_flux") == 0) {
        if (parse_double(t, 0.0, 1e9, &dv))
            return -1;
        g_run.panel_flux = dv;
        return 1;
    }
    if (strcmp(k, "vignetting") == 0) {
        if (parse_double(t, 0.0, 0.99, &dv))
            return -1;
        g_run.vignetting = dv;
        return 1;
    }
    return 0;
}

/* A named field of a camera (``offset`` in cam_t) and its kind. For the per-camera keys (faults
 * and actions) the kind says what the key does: 'l' a long count, 'b' a 0/1 flag, 'd' seconds
 * (0..86400), 'r' remove, 'a' reattach (actions when non-zero), 'x' the ASI ID (8 bytes). */
typedef struct {
    const char *key;
    char kind;
    size_t offset;
} cam_key_t;

static const cam_key_t k_cam_keys[] = {
    {"fail_every", 'l', offsetof(cam_t, fail_every)},
    {"remove_after", 'l', offsetof(cam_t, remove_after)},
    {"stall_next", 'b', offsetof(cam_t, stall_next)},
    {"remove", 'r', 0},
    {"reattach", 'a', 0},
    {"asi_id", 'x', 0},
    {"reattach_after_s", 'd', offsetof(cam_t, reattach_after_s)},
    {"hang_stop_s", 'd', offsetof(cam_t, hang_stop_s)},
    {"hang_data_s", 'd', offsetof(cam_t, hang_data_s)},
    {"hang_status_s", 'd', offsetof(cam_t, hang_status_s)},
};
#define N_CAM_KEYS ((int)(sizeof(k_cam_keys) / sizeof(k_cam_keys[0])))

/* Per-camera keys for slot *target. Returns 1 if handled, 0 if not, -1 on error. */
static int apply_cam_key(const token_t *t, int *target)
{
    const char *k = t->key;
    double dv;
    long lv;
    if (strcmp(k, "target") == 0) {
        if (parse_long(t, 0, MAX_CAMS - 1, &lv))
            return -1;
        *target = (int)lv;
        return 1;
    }
    const cam_key_t *ck = NULL;
    for (int i = 0; i < N_CAM_KEYS && !ck; i++)
        if (strcmp(k, k_cam_keys[i].key) == 0)
            ck = &k_cam_keys[i];
    if (!ck)
        return 0;
    cam_t *c = &g_cams[*target];
    if (!c->used) {
        snprintf(g_error, sizeof(g_error), "%.31s: no camera in slot %d", k, *target);
        return -1;
    }
    char *field = (char *)c + ck->offset;
    if (ck->kind == 'x')
        return parse_bytes8(t, c->asi_id) ? -1 : 1;
    if (ck->kind == 'd') {
        if (parse_double(t, 0.0, 86400.0, &dv))
            return -1;
        *(double *)(void *)field = dv;
        return 1;
    }
    if (parse_long(t, 0, 1000000000L, &lv))
        return -1;
    if (ck->kind == 'l')
        *(long *)(void *)field = lv;
    else if (ck->kind == 'b')
        *(int *)(void *)field = lv != 0;
    else if (ck->kind == 'r' && lv)
        do_remove(c);
    else if (ck->kind == 'a' && lv)
        do_reattach(c);
    return 1;
}

int ASIDoubleConfigure(const char *text)
{
    pthread_once(&g_once, init_once);
    pthread_mutex_lock(&g_lock);
    int rc = configure_locked(text);
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* Caller holds the lock (or runs inside init_once, before any other thread can get in). */
static int configure_locked(const char *text)
{
    static token_t tokens[MAX_TOKENS];
    g_error[0] = '\0';
    int n = text ? tokenize(text, tokens, MAX_TOKENS) : 0;
    int rc = n < 0 ? -1 : 0, rebuild_needed = 0, target = 0;
    /* Pass 1: reset, camera definition, run-time settings. */
    for (int i = 0; rc == 0 && i < n; i++) {
        if (strcmp(tokens[i].key, "reset") == 0) {
            default_build(&g_build);
            default_run(&g_run);
            g_real0 = real_now();
            g_sim0 = 0.0;
            rebuild_needed = 1;
            continue;
        }
        int r = apply_build_key(&tokens[i], &g_build);
        if (r == 1)
            rebuild_needed = 1;
        if (r == 0)
            r = apply_run_key(&tokens[i]);
        if (r < 0)
            rc = -1;
    }
    if (rc == 0 && rebuild_needed) {
        if (g_build.bit_depth < 8 || g_build.unity_gain > g_build.gain_max + 1000) {
            snprintf(g_error, sizeof(g_error), "inconsistent camera definition");
            rc = -1;
        } else if (rebuild() != 0) {
            rc = -1;
        }
    }
    /* Pass 2: per-camera faults and actions, in order. */
    for (int i = 0; rc == 0 && i < n; i++) {
        const token_t *t = &tokens[i];
        if (strcmp(t->key, "reset") == 0)
            continue;
        build_cfg_t scratch = g_build;
        int r = apply_build_key(t, &scratch);
        if (r == 0)
            r = strcmp(t->key, "time_scale") && strcmp(t->key, "ambient_c") &&
                        strcmp(t->key, "panel_flux") && strcmp(t->key, "vignetting")
                    ? 0
                    : 1;
        if (r == 0)
            r = apply_cam_key(t, &target);
        if (r == 0) {
            snprintf(g_error, sizeof(g_error), "unknown key '%.31s'", t->key);
            rc = -1;
        }
        if (r < 0)
            rc = -1;
    }
    return rc;
}

const char *ASIDoubleLastError(void)
{
    return g_error;
}

/* The per-camera fields ASIDoubleStat reports, as cam_key_t ('i' an int, 'l' a long field);
 * "temperature_x10" is computed, not stored. */
static const cam_key_t k_cam_stats[] = {
    {"present", 'i', offsetof(cam_t, present)},
    {"open", 'i', offsetof(cam_t, open)},
    {"id", 'i', offsetof(cam_t, id)},
    {"status", 'i', offsetof(cam_t, status)},
    {"exposures", 'l', offsetof(cam_t, n_exposures)},
    {"failed", 'l', offsetof(cam_t, n_failed)},
    {"stopped", 'l', offsetof(cam_t, n_stopped)},
    {"downloads", 'l', offsetof(cam_t, n_downloads)},
    {"removed", 'l', offsetof(cam_t, n_removed)},
    {"hangs", 'l', offsetof(cam_t, n_hangs)},
    {"opens", 'l', offsetof(cam_t, n_opens)},
    {"cooler_on", 'l', offsetof(cam_t, ctl[DBL_CTL_COOLER_ON])},
};
#define N_CAM_STATS ((int)(sizeof(k_cam_stats) / sizeof(k_cam_stats[0])))

long ASIDoubleStat(const char *name, int slot)
{
    pthread_once(&g_once, init_once);
    pthread_mutex_lock(&g_lock);
    reattach_due();
    long v = -1;
    if (!name) {
    } else if (!strcmp(name, "calls")) {
        v = g_calls;
    } else if (!strcmp(name, "generation")) {
        v = (long)g_generation;
    } else if (!strcmp(name, "hangs_active")) {
        v = g_hangs_active;
    } else if (!strcmp(name, "cameras_present")) {
        v = 0;
        for (int i = 0; i < MAX_CAMS; i++)
            v += g_cams[i].used && g_cams[i].present;
    } else if (slot >= 0 && slot < MAX_CAMS && g_cams[slot].used) {
        const cam_t *c = &g_cams[slot];
        if (!strcmp(name, "temperature_x10"))
            v = lround(10.0 * cam_temperature(c, sim_now()));
        for (int i = 0; i < N_CAM_STATS; i++) {
            const cam_key_t *st = &k_cam_stats[i];
            if (strcmp(name, st->key) != 0)
                continue;
            const char *field = (const char *)c + st->offset;
            v = st->kind == 'l' ? *(const long *)(const void *)field
                                : *(const int *)(const void *)field;
            break;
        }
    }
    pthread_mutex_unlock(&g_lock);
    return v;
}

int ASIDoubleSizeof(const char *name)
{
    if (!name)
        return -1;
    if (!strcmp(name, "camera_info"))
        return (int)sizeof(dbl_camera_info_t);
    if (!strcmp(name, "control_caps"))
        return (int)sizeof(dbl_control_caps_t);
    if (!strcmp(name, "id"))
        return (int)sizeof(dbl_id8_t);
    if (!strcmp(name, "modes"))
        return (int)sizeof(dbl_modes_t);
    if (!strcmp(name, "long"))
        return (int)sizeof(long);
    return -1;
}
