"""calibd: unattended calibration frames for cooled CMOS astronomy cameras.

The one installed import package. Its subpackages are the repository's top-level folders:
``calibd.capture`` (the core, ``capture/``), ``calibd.drivers`` (device contracts and the INDI,
Alpaca and ZWO drivers, ``drivers/``) and ``calibd.simulators`` (the simulated observatory,
``simulators/``). In the repository they are symbolic links to those folders; the wheel holds
the files themselves.
"""
