"""edgerl.envs: the SimPy device-edge-cloud simulator and its Gymnasium adapter."""
