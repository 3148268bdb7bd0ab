"""The calibration report: plots of what the library holds (``calibd report``, and the web
view's report page)."""
