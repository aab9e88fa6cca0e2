package onnx

import (
	"encoding/binary"
	"io"
	"maps"
	"math"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// Encode writes m in the protobuf wire format of onnx.proto: the fields
// Decode reads (float tensors as raw_data), so Decode(Encode(m)) gives m
// back.
func Encode(w io.Writer, m *ModelProto) error {
	_, err := w.Write(Marshal(m))
	return err
}

// Marshal returns the serialized ModelProto; see Encode.
func Marshal(m *ModelProto) []byte {
	var b []byte
	b = appendVarint(b, 1, uint64(m.IRVersion))
	b = appendString(b, 2, m.Producer)
	if m.Graph != nil {
		b = appendMessage(b, 7, encodeGraph(m.Graph))
	}
	for _, domain := range slices.Sorted(maps.Keys(m.Opsets)) {
		var o []byte
		o = appendString(o, 1, domain)
		o = appendVarint(o, 2, uint64(m.Opsets[domain]))
		b = appendMessage(b, 8, o)
	}
	return b
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

func appendInts(b []byte, num protowire.Number, v []int64) []byte {
	if len(v) == 0 {
		return b
	}
	var p []byte
	for _, x := range v {
		p = protowire.AppendVarint(p, uint64(x))
	}
	return appendMessage(b, num, p)
}

func encodeGraph(g *GraphProto) []byte {
	var b []byte
	for _, n := range g.Nodes {
		b = appendMessage(b, 1, encodeNode(n))
	}
	b = appendString(b, 2, g.Name)
	for _, t := range g.Initializers {
		b = appendMessage(b, 5, encodeTensor(t))
	}
	for _, v := range g.Inputs {
		b = appendMessage(b, 11, encodeValueInfo(v))
	}
	for _, v := range g.Outputs {
		b = appendMessage(b, 12, encodeValueInfo(v))
	}
	return b
}

func encodeNode(n *NodeProto) []byte {
	var b []byte
	for _, s := range n.Inputs {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	for _, s := range n.Outputs {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	b = appendString(b, 3, n.Name)
	b = appendString(b, 4, n.OpType)
	for _, a := range n.Attributes {
		b = appendMessage(b, 5, encodeAttribute(a))
	}
	return appendString(b, 7, n.Domain)
}

func encodeAttribute(a *AttributeProto) []byte {
	var b []byte
	b = appendString(b, 1, a.Name)
	switch a.Type {
	case AttrFloat:
		b = protowire.AppendTag(b, 2, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.F))
	case AttrInt:
		b = appendVarint(b, 3, uint64(a.I))
	case AttrString:
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, a.S)
	case AttrTensor:
		b = appendMessage(b, 5, encodeTensor(a.T))
	case AttrFloats:
		p := make([]byte, 0, 4*len(a.Floats))
		for _, f := range a.Floats {
			p = binary.LittleEndian.AppendUint32(p, math.Float32bits(f))
		}
		b = appendMessage(b, 7, p)
	case AttrInts:
		b = appendInts(b, 8, a.Ints)
	}
	return appendVarint(b, 20, uint64(a.Type))
}

// encodeTensor writes float tensors as raw_data, integer ones as
// int64_data.
func encodeTensor(t *TensorProto) []byte {
	var b []byte
	b = appendInts(b, 1, t.Dims)
	b = appendVarint(b, 2, uint64(t.DataType))
	b = appendString(b, 8, t.Name)
	switch {
	case t.DataType == TypeFloat:
		raw := make([]byte, 0, 4*len(t.Floats))
		for _, f := range t.Floats {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
		}
		b = protowire.AppendTag(b, 9, protowire.BytesType)
		b = protowire.AppendBytes(b, raw)
	case t.Ints != nil:
		b = appendInts(b, 7, t.Ints)
	}
	return b
}

func encodeValueInfo(v *ValueInfoProto) []byte {
	var shape []byte
	for _, d := range v.Dims {
		var db []byte
		if d.Param != "" {
			db = appendString(db, 2, d.Param)
		} else {
			db = appendVarint(db, 1, uint64(d.Value))
		}
		shape = appendMessage(shape, 1, db)
	}
	var tt []byte
	tt = appendVarint(tt, 1, uint64(v.ElemType))
	if v.Dims != nil {
		tt = appendMessage(tt, 2, shape)
	}
	var b []byte
	b = appendString(b, 1, v.Name)
	return appendMessage(b, 2, appendMessage(nil, 1, tt))
}
