"""Device contracts (Protocols, state dataclasses, errors) and the vendor adapters.

Vendor libraries are imported only inside their own module here (``indi``, ``alpaca``, ``zwo``),
lazily, when a configuration asks for that driver.
"""
