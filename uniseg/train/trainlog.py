"""What the training loops share besides the model: the poly learning rate and the progress log.

Both the engine (train, retrain) and the pretrain stage decay the learning rate as (1 - it/iters)^power
per iteration and report progress the same way: a tqdm bar in a terminal, otherwise one line per logging
window (mean loss over the window, learning rate, images/s, ETA) — CI logs and `dvc exp` queues have no
terminal. The engine also logs the window's numbers to dvclive (`dvc plots show`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path


def poly(iters: int, power: float = 0.9) -> Callable[[int], float]:
    """The poly schedule as a LambdaLR factor: (1 - it/iters)^power, 0 from `iters` on."""
    return lambda it: max(0.0, 1.0 - it / iters) ** power


def duration(seconds: float) -> str:
    """'4m07s'."""
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class TrainLog:
    """Progress of one training run, fed with `update(iteration, loss, lr, count)`: the summed loss of
    the `count` iterations up to `iteration` (once per iteration, or once per window: the engine reads
    its losses from the device only where it logs).

    Every `every` iterations (and at the last) the window's mean loss, the learning rate and the speed go
    to dvclive when `live_dir` is given, and to `echo` as one line unless a progress bar is shown (`bar`
    and a terminal on stderr)."""

    def __init__(
        self,
        name: str,
        iters: int,
        batch_size: int,
        every: int,
        *,
        start: int = 0,
        live_dir: Path | None = None,
        bar: bool = True,
        echo: Callable[[str], None] | None = None,
    ):
        from tqdm import tqdm

        self.name, self.iters, self.batch_size, self.every = name, iters, batch_size, every
        self.echo = echo or (lambda line: print(line, flush=True))
        self.live = None
        if live_dir is not None:
            from dvclive import Live

            self.live = Live(str(live_dir), resume=start > 0, save_dvc_exp=False, dvcyaml=None)
        shown = bar and sys.stderr.isatty()
        self.bar = tqdm(total=iters, initial=start, desc=name, disable=not shown, mininterval=5)
        self.lines = not shown  # a log line instead of the bar outside a terminal
        self._reset(time.perf_counter())

    def _reset(self, now: float) -> None:
        self.loss_sum, self.n, self.since = 0.0, 0, now

    def update(self, iteration: int, loss: float, lr: float, count: int = 1) -> None:
        self.loss_sum, self.n = self.loss_sum + loss, self.n + count
        self.bar.update(count)
        if iteration % self.every and iteration != self.iters:
            return
        now = time.perf_counter()
        mean, rate = self.loss_sum / self.n, self.n / max(now - self.since, 1e-9)
        if self.live is not None:
            self.live.log_metric("loss", mean)
            self.live.log_metric("lr", lr)
            self.live.log_metric("images_per_s", rate * self.batch_size)
            self.live.step = iteration
            self.live.next_step()
        self.bar.set_postfix(loss=f"{mean:.4f}")
        if self.lines:
            eta = (self.iters - iteration) / max(rate, 1e-9)
            self.echo(
                f"{self.name} iteration {iteration}/{self.iters}  loss {mean:.4f}  lr {lr:.3g}  "
                f"{rate * self.batch_size:.1f} images/s  ETA {duration(eta)}"
            )
        self._reset(now)

    def close(self) -> None:
        self.bar.close()
        if self.live is not None:
            self.live.end()
