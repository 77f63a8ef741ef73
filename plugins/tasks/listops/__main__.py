"""``python -m attnbench_plugins.tasks.listops --output-dir DIR``: write LRA-format ListOps TSV files."""

from .generator import main

main()
