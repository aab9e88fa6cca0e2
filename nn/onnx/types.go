package onnx

// The subset of onnx.proto (ONNX IR version 3 and later) the importer
// reads and the exporter writes. Field numbers are those of
// onnx/onnx.proto.

// ModelProto is an ONNX model: its IR version, operator sets and graph.
type ModelProto struct {
	IRVersion int64
	Producer  string
	Opsets    map[string]int64 // domain ("" for ai.onnx) to version
	Graph     *GraphProto
}

// GraphProto is a computation graph.
type GraphProto struct {
	Name         string
	Nodes        []*NodeProto
	Initializers []*TensorProto
	Inputs       []*ValueInfoProto
	Outputs      []*ValueInfoProto
}

// NodeProto is one operator application.
type NodeProto struct {
	Name, OpType, Domain string
	Inputs, Outputs      []string
	Attributes           []*AttributeProto
}

// AttributeProto is a named attribute of a node. Graph-valued attributes
// (control flow) are recorded but not decoded.
type AttributeProto struct {
	Name   string
	Type   int32
	F      float32
	I      int64
	S      []byte
	T      *TensorProto
	Floats []float32
	Ints   []int64
	Graph  bool // a GRAPH or GRAPHS attribute
}

// The AttributeProto.Type values the importer reads.
const (
	AttrFloat   = 1
	AttrInt     = 2
	AttrString  = 3
	AttrTensor  = 4
	AttrFloats  = 6
	AttrInts    = 7
	attrGraph   = 5
	attrGraphs  = 10
	maxTensorLn = 1 << 31 // values in one tensor
)

// The TensorProto.DataType values the importer reads.
const (
	TypeFloat  = 1
	TypeInt32  = 6
	TypeInt64  = 7
	TypeDouble = 11
)

// TensorProto is a constant tensor. Floats holds the values of FLOAT and
// DOUBLE tensors, Ints those of INT32 and INT64 tensors; other types keep
// only their shape.
type TensorProto struct {
	Name     string
	Dims     []int64
	DataType int32
	Floats   []float32
	Ints     []int64
	External bool // data_location EXTERNAL: the values are in another file
}

// ValueInfoProto names a graph input or output with its tensor type.
type ValueInfoProto struct {
	Name     string
	ElemType int32
	Dims     []Dim // nil when the shape is unknown
}

// Dim is one dimension of a value: a number, or a symbolic name (Param)
// when Value is 0.
type Dim struct {
	Value int64
	Param string
}
