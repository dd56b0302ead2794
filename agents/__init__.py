"""edgerl.agents: policies that choose an execution plan per request.

Every policy, learned or hand-written, answers
``predict(observation, action_mask=None, deterministic=True) -> int`` (:mod:`.base`), so one
evaluator (:mod:`.evaluation`) scores all of them and the runtime planner uses the same call.

Modules (import what you need; this package imports nothing heavy on purpose, because the
runtime planner, which must not load torch, SB3 or Gymnasium, lives here too):

- :mod:`.base`: the policy interface, the SB3 tuple-convention adapter.
- :mod:`.baselines`: device/edge/cloud-only, random, Neurosurgeon, Edgent, best fixed plan,
  clairvoyant greedy; :func:`.baselines.make_baseline` by name.
- :mod:`.latency`: the regression latency/energy predictions Neurosurgeon and Edgent use.
- :mod:`.best_fixed`: the exhaustive fixed-plan search (cached).
- :mod:`.evaluation`: rollouts and per-request metrics with confidence intervals.
- :mod:`.hyperparams`, :mod:`.learned`, :mod:`.training`: SB3 agents (torch imported there).
- :mod:`.rundir`: the run-directory contract (reading and validating ``run.json``).
"""
