"""edgerl.experiments: experiment scripts and the ``edgerl`` command line."""
