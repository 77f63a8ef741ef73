"""What every task's training shares: seeding, shuffled batches, the warm-up/cosine
schedule, the AdamW step loop wired to the harness's meter and progress, and evaluation
in eval mode. A task package keeps only its model, its data and its metric.

* :func:`seed_everything` — Python, NumPy and torch from one seed.
* :func:`shuffled_batches` — index batches, reshuffled every epoch, forever.
* :func:`warmup_cosine` — linear warm-up, then cosine decay to zero.
* :class:`TrainConfig` / :func:`train_steps` — the loop: AdamW, clipping, schedule,
  ``ctx.meter`` timing, ``ctx.progress`` per step (NaN loss → ``diverged``).
* :func:`batched_eval` — run a function over a split in eval mode without gradients.
* :mod:`attnbench.training.classification` — ``train_classifier``, ``accuracy`` and
  ``classification_metrics`` for classifiers over token splits (ListOps, LRA text).
"""

from attnbench.training.batches import shuffled_batches
from attnbench.training.evaluate import batched_eval
from attnbench.training.loop import TrainConfig, train_steps
from attnbench.training.schedule import warmup_cosine
from attnbench.training.seeding import seed_everything

__all__ = ["TrainConfig", "batched_eval", "seed_everything", "shuffled_batches", "train_steps", "warmup_cosine"]
