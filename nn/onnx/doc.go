// Package onnx imports image classifiers from ONNX files (a serialized
// onnx.proto ModelProto, IR version 3 and later) into package graph, so
// that every attack gets their logits and input gradients computed on the
// project's own kernels, and exports the project's classifiers to ONNX.
//
// The decoder reads the protobuf wire format directly
// (google.golang.org/protobuf/encoding/protowire) for the subset of
// onnx.proto a classifier needs: the model's IR version and operator sets,
// the graph's nodes, attributes, initializers (raw_data, float_data,
// int64_data, int32_data, double_data) and the input and output value
// infos. The operators covered are listed in docs/models.md; any other is
// an *UnsupportedError naming the operator and the node.
package onnx
