"""INDI doubles: driver executables that speak the INDI XML protocol on stdin/stdout under the
real ``indiserver``, define the property sets of real camera drivers (``indi_asi_ccd``,
``indi_qhy_ccd``, the Touptek family, ``indi_playerone_ccd``) and make their frames with
calibd's sensor physics (:mod:`simulators.sensor`, :mod:`simulators.cooler`).

Run one with ``python -m calibd.simulators.indi_doubles FAMILY [--scale N] [--width W --height H]``;
indiserver starts drivers by executable name, so tests put a small wrapper named like the real
driver (``indi_asi_ccd``) on indiserver's ``PATH`` (see ``tests/indi_server.py``).

Why not a library such as ``indipydriver``: the doubles must reproduce details a framework
decides for you (write-only switches, the exact Busy/Ok/Alert sequence, an element with an empty
name, snooping another device), and the protocol subset a camera needs is small.
Nothing here imports ``capture``.
"""
