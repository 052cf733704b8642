"""Conversion of binary networks: ONNX -> Larq Compute Engine / TFLite, audit, verification, embedding."""
