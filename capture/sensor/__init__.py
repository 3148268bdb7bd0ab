"""Sensor characterisation from library frames: photon transfer after EMVA 1288 (system gain,
read noise, full well, dynamic range, PRNU, DSNU, linearity), offset clipping, and the
dark-current model (rate per set-point, doubling temperature, amp glow). Frames come from the
library index; results are stored next to the library (:mod:`capture.sensor.store`)."""
