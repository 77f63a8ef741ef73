"""attnbench: which attention should I use, for this task, on this hardware?

Plugin authors need only this module::

    import attnbench

    @attnbench.hookimpl
    def register_attention(register):
        register(attnbench.AttentionSpec(
            name="mine", build=MyAttention, summary="one line", complexity="O(L)",
        ))

and an entry point in their ``pyproject.toml``::

    [project.entry-points.attnbench]
    mine = "my_package.my_module"

Then ``attnbench list attention`` shows it, ``attnbench run --variants mine`` runs it,
and ``pytest`` with :mod:`attnbench.testing` checks it against the contract.
"""

from attnbench import flex as flex  # attnbench.flex.variant(): a variant from a FlexAttention score_mod/mask_mod
from attnbench.errors import AttnbenchError
from attnbench.hookspecs import hookimpl, hookspec
from attnbench.specs import (
    CAPABILITIES,
    PROFILES,
    STATUSES,
    AttentionConfig,
    AttentionSpec,
    Metric,
    Progress,
    ResultRow,
    RunContext,
    Task,
)

__version__ = "0.1.0"

__all__ = [
    "CAPABILITIES", "PROFILES", "STATUSES", "AttentionConfig", "AttentionSpec", "AttnbenchError",
    "Metric", "Progress", "ResultRow", "RunContext", "Task", "__version__", "hookimpl", "hookspec",
]
