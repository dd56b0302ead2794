"""edgerl.envs.sim: the discrete-event simulator (SimPy only, no Gymnasium)."""
