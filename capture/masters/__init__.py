"""Masters (bias, dark, dark flat, flat) and bad pixel maps built from the library's frames with
the streaming combination engine (:mod:`capture.combine`), and matching masters to light frames."""
