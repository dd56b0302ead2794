"""Bayesian online change-point detection (numpy only).

Adams, MacKay: "Bayesian Online Changepoint Detection", arXiv:0710.3742, 2007. The data are
piecewise stationary; the detector keeps the posterior over the *run length* (time since the
last change point) and updates it with each observation, using a constant hazard ``1/λ`` and
a conjugate model per segment: here a Gaussian with unknown mean (Normal prior) and known
noise variance. A change is declared when the most probable run length falls, i.e. when the
posterior's best explanation moves to a more recent change point.

Used by Edgent's dynamic configurator (:class:`edgerl.agents.serving.EdgentDynamicPolicy`)
on the log of the bandwidth estimate.
"""

from __future__ import annotations

import math

import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)


class GaussianBOCPD:
    """Run-length posterior for a Gaussian with unknown mean and known variance.

    Args:
        hazard_lambda: expected segment length [observations] (hazard ``1 / hazard_lambda``).
        noise_sd: standard deviation of an observation around its segment's mean.
        prior_mean: prior mean of a segment's mean.
        prior_sd: prior standard deviation of a segment's mean.
        max_run: run lengths beyond this are merged into it (bounded memory and time).
    """

    def __init__(
        self,
        hazard_lambda: float,
        noise_sd: float,
        prior_mean: float,
        prior_sd: float,
        max_run: int = 500,
    ) -> None:
        if hazard_lambda <= 1 or noise_sd <= 0 or prior_sd <= 0 or max_run < 2:  # noqa: PLR2004
            raise ValueError("need hazard_lambda > 1, noise_sd > 0, prior_sd > 0, max_run >= 2")
        self.log_h = math.log(1.0 / hazard_lambda)
        self.log_1mh = math.log1p(-1.0 / hazard_lambda)
        self.noise_var = noise_sd**2
        self.prior_mean, self.prior_var = prior_mean, prior_sd**2
        self.max_run = max_run
        self.reset()

    def reset(self) -> None:
        self.log_r = np.zeros(1)  # log P(run length = r | data), r = 0..len-1
        self.mean = np.array([self.prior_mean])  # posterior mean of the segment mean, per r
        self.var = np.array([self.prior_var])  # its posterior variance, per r
        self.map_run = 0
        self.n = 0
        self.last_x = self.prior_mean

    def update(self, x: float) -> bool:
        """Add one observation; return True if a change point is declared now."""
        pred_var = self.var + self.noise_var
        log_pred = -0.5 * (_LOG_2PI + np.log(pred_var) + (x - self.mean) ** 2 / pred_var)
        joint = self.log_r + log_pred
        grow = joint + self.log_1mh
        cp = np.logaddexp.reduce(joint + self.log_h)
        log_r = np.concatenate(([cp], grow))
        # posterior of each segment's mean after x (conjugate Normal update)
        new_var = 1.0 / (1.0 / self.var + 1.0 / self.noise_var)
        new_mean = new_var * (self.mean / self.var + x / self.noise_var)
        mean = np.concatenate(([self.prior_mean], new_mean))
        var = np.concatenate(([self.prior_var], new_var))
        if log_r.size > self.max_run:  # merge the tail into the longest kept run length
            log_r[self.max_run - 1] = np.logaddexp.reduce(log_r[self.max_run - 1 :])
            log_r, mean, var = log_r[: self.max_run], mean[: self.max_run], var[: self.max_run]
        log_r -= np.logaddexp.reduce(log_r)
        self.log_r, self.mean, self.var = log_r, mean, var
        previous, self.map_run = self.map_run, int(np.argmax(log_r))
        self.n += 1
        self.last_x = x
        return self.n > 1 and self.map_run < previous

    @property
    def segment_mean(self) -> float:
        """The current segment's level: the posterior mean of its mean under the most probable
        run length (run length 0 holds no data yet: the latest observation then)."""
        return float(self.mean[self.map_run]) if self.map_run > 0 else self.last_x
