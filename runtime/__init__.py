"""The split-inference runtime: device, edge and cloud processes executing real model segments.

See README ("Runtime") and the modules: :mod:`.frames` (wire format), :mod:`.shaper` (trace-driven
token bucket), :mod:`.segments` (model segments), :mod:`.workload`, :mod:`.servers`,
:mod:`.device`, :mod:`.launch`.
"""
