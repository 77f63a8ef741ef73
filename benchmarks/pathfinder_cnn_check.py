"""Is lra-pathfinder's quick data learnable at all in a CPU minute or two? A convolutional control.

The transformer stays at chance on ``lra-pathfinder`` quick. This trains a plain CNN (six 3×3
convolutions of 32 channels, global max pooling, a linear head; Adam 1e-3, batch 32) on the
same generated images the task would use, with the task's profile plus any ``KEY=VALUE``
overrides of its generator keys, and prints the training loss and test accuracy every 250 steps.
If the CNN also sits at chance, the plateau belongs to the task (dashed contours whose
connectivity must be traced over many pixels), not to attention.

    OMP_NUM_THREADS=1 python benchmarks/pathfinder_cnn_check.py --steps 1500
    OMP_NUM_THREADS=1 python benchmarks/pathfinder_cnn_check.py --steps 1500 length=576 seed_distance=5 \
        contour_length=5 n_train=3000
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from attnbench_plugins.tasks.lra_pathfinder import data, task
from torch import nn

from attnbench.runner.overrides import apply_task_overrides, parse_assignment


def main() -> None:
    """Parse flags, draw (or read from the cache) the images, train the CNN, print its curve."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="profile keys to change, parsed as `attnbench run --set` parses them")
    args = parser.parse_args()
    overrides = [parse_assignment(item, "KEY=VALUE") for item in args.overrides]
    config = apply_task_overrides(task.NAME, task.PROFILES[args.profile], overrides)  # as `run --set` does
    side = math.isqrt(int(config["length"]))
    start = time.perf_counter()
    splits = data.generated(config, side)
    majority = splits.test.majority_fraction(data.NUM_CLASSES)
    print(f"{side}×{side} images, {len(splits.train.labels)} train / {len(splits.test.labels)} test, "
          f"test majority {majority:.3f}; data in {time.perf_counter() - start:.1f} s", flush=True)

    def images(split):
        return split.tokens.float().view(-1, 1, side, side) / 255, split.labels

    x_train, y_train = images(splits.train)
    x_test, y_test = images(splits.test)
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for channels in [1] + [32] * 5:
        layers += [nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU()]
    net = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(32, 2))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = torch.randint(0, len(x_train), (32,))
        loss = nn.functional.cross_entropy(net(x_train[batch]), y_train[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 250 == 0 or step == args.steps:
            with torch.no_grad():
                accuracy = (net(x_test).argmax(1) == y_test).float().mean().item()
            print(f"step {step:5d}  loss {loss.item():.3f}  test accuracy {accuracy:.3f}  "
                  f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
