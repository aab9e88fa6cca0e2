// Package graph runs classifiers given as directed acyclic graphs of
// operations (imported from ONNX files or assembled from PyTorch
// state_dicts) on the layers and kernels of package nn: convolutions on
// nn.Conv2D (oneDNN in the cgo build), batch norms on nn.BatchNorm2D,
// dense layers on nn.Dense, plus the pooling, element-wise, broadcasting
// and shape operations image classifiers need.
//
// A Graph has one input, an image batch (N, C, H, W), and one output; its
// nodes run in topological order forward and in reverse order backward,
// with the gradients of values used by several nodes (residual additions,
// concatenations) summed. Model wraps a Graph as an attack.Model: logits
// and the input gradient dL/dx = sum_{n,k} g[n,k] dlogits[n,k]/dx of any
// seed g, so every attack of the project runs against it.
//
// Constants (weights, the input normalization's mean and standard
// deviation) belong to the ops, not to the graph: every value of a graph
// is computed from the input and carries the batch as its first
// dimension.
package graph
