"""edgerl.agents: one ``predict(obs, action_mask)`` interface for baselines and learned policies."""
