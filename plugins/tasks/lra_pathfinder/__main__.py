"""``python -m attnbench_plugins.tasks.lra_pathfinder --output-dir DIR``: write Pathfinder-32 levels in LRA's layout."""

from .generator import main

main()
