"""A Jumpstarter deployment for the interop tests: test controller, test router, the stock
exporter's runner, and the pytest fixtures that start them (``fixtures.py``)."""
