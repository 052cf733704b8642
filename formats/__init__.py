"""Shared contracts of every stage: file formats, deploy metadata and atomic file writes.

The lowest layer of edgebnn. Every stage (trainer, converter, runtime, devices) and the CLI may
import it; it imports none of them, nor torch or TensorFlow (numpy, onnx, flatbuffers and the
TFLite schema code of ai_edge_litert only, each imported where it is needed).

=================  ===========================================================================
``files``          atomic writes, writability checks, outputs that would overwrite an input
``kinds``          what kind of model file this is (tflite, ebnn, checkpoint, onnx), from its bytes
``metadata``       the deploy metadata (``edgebnn.*`` keys) of ONNX, .tflite and native models
``tflite``         the one .tflite reader (ops, tensors, metadata buffers) and metadata writer
``ebnn``           the native model container (.ebnn, docs/native-format.md)
``models``         any model file: its deploy metadata, whatever the format
``errors``         ``FormatError`` (exit code 2), the one error type of this package
=================  ===========================================================================
"""
