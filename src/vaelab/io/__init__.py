"""Files: atomic writes, run directories, metrics logs, image grids and plots.

The bottom layer: io imports nothing else from vaelab, so every other layer may use it.
"""
