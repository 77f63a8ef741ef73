"""The hooks a plugin may implement. Each docstring is that hook's reference documentation.

A plugin is a module listed under the ``attnbench`` entry-point group, holding functions
marked with :data:`hookimpl` whose names match the hooks below::

    # pyproject.toml
    [project.entry-points.attnbench]
    mine = "my_package.my_module"

    # my_package/my_module.py
    import attnbench

    @attnbench.hookimpl
    def register_attention(register):
        register(attnbench.AttentionSpec(name="mine", build=MyAttention, ...))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from attnbench.specs import AttentionSpec, Task

PROJECT = "attnbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_attention(register: Callable[[AttentionSpec], None]) -> None:
    """Called once per plugin when the registry is first built, to add attention variants.

    Call ``register(spec)`` once per variant with an :class:`attnbench.AttentionSpec`.
    A name registered by two plugins is an error that names both.

    :param register: callback taking one ``AttentionSpec``.
    """


@hookspec
def register_tasks(register: Callable[[Task], None]) -> None:
    """Called once per plugin when the registry is first built, to add benchmark tasks.

    Call ``register(task)`` once per task with an object satisfying
    :class:`attnbench.Task`. A name registered by two plugins is an error that names both.

    :param register: callback taking one task object.
    """
