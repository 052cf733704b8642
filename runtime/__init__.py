"""Running deployed models: engines, the benchmark worker and its record, reports, verification, cost model.

=====================  ===========================================================================
``engines``            LCE, LiteRT, ONNX Runtime and native behind one small interface (no TensorFlow)
``native``             the native engine's ctypes binding (``NativeModel`` over ``libedgebnn``)
``translate``          LCE ``.tflite`` -> ``.ebnn``: how the native engine runs LCE files
``worker``             ``python -m runtime.worker``: one model, one configuration, one JSON record
``record``             the benchmark record (schema.json): builder, rounds, ratios, warnings, labels
``report``             ``BenchReport``: table, JSON file; ``plots``: its PNG charts
``verify``             ``verify(reference, candidate, inputs, labels)``: do two models agree?
``estimate``           latency of a converted model on a device from a per-op cost model
``cost_calibration``   the cost model's rates fitted to LCE's published latencies
=====================  ===========================================================================

The runtime imports ``formats`` only: never the converter, the devices stage, the trainer or
TensorFlow. Where a benchmark runs (this host, a device) is the devices stage's business
(``devices/bench.py``).
"""
