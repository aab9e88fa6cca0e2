package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// The decoder of the protobuf wire format of the types in types.go; unknown
// fields are skipped, as protobuf requires.

// FormatError reports input that is not a well-formed ONNX model.
type FormatError struct {
	Where string // the message and field, e.g. "TensorProto.raw_data"
	Msg   string
}

func (e *FormatError) Error() string { return "onnx: malformed " + e.Where + ": " + e.Msg }

func malformed(where, format string, args ...any) error {
	return &FormatError{Where: where, Msg: fmt.Sprintf(format, args...)}
}

// wireErr converts a negative protowire length to an error:
// io.ErrUnexpectedEOF for truncated input, a *FormatError otherwise.
func wireErr(where string, n int) error {
	err := protowire.ParseError(n)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("onnx: %s: %w", where, io.ErrUnexpectedEOF)
	}
	return &FormatError{Where: where, Msg: err.Error()}
}

// field is one decoded field: its number and wire type, the scalar of a
// varint or fixed field, the payload of a length-delimited one.
type field struct {
	num protowire.Number
	typ protowire.Type
	x   uint64
	b   []byte
}

// walk calls fn for every field of the message b (groups are skipped).
func walk(where string, b []byte, fn func(f field) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return wireErr(where, n)
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.x = uint64(v)
		case protowire.Fixed64Type:
			f.x, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return wireErr(where, n)
		}
		b = b[n:]
		if typ == protowire.StartGroupType {
			continue
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// want checks a field's wire type.
func (f field) want(where string, t protowire.Type) error {
	if f.typ != t {
		return malformed(where, "field %d has wire type %d, want %d", f.num, f.typ, t)
	}
	return nil
}

// str returns a string field.
func (f field) str(where string) (string, error) {
	if err := f.want(where, protowire.BytesType); err != nil {
		return "", err
	}
	return string(f.b), nil
}

// ints appends the int64 values of a repeated int64 field, packed or not.
func (f field) ints(where string, dst []int64) ([]int64, error) {
	switch f.typ {
	case protowire.VarintType:
		return append(dst, int64(f.x)), nil
	case protowire.BytesType:
		b := f.b
		for len(b) > 0 {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, wireErr(where, n)
			}
			dst = append(dst, int64(v))
			b = b[n:]
		}
		return dst, nil
	}
	return nil, malformed(where, "field %d: wire type %d for integers", f.num, f.typ)
}

// floats appends the values of a repeated float field, packed or not.
func (f field) floats(where string, dst []float32) ([]float32, error) {
	switch f.typ {
	case protowire.Fixed32Type:
		return append(dst, math.Float32frombits(uint32(f.x))), nil
	case protowire.BytesType:
		if len(f.b)%4 != 0 {
			return nil, malformed(where, "packed floats of %d bytes", len(f.b))
		}
		for i := 0; i < len(f.b); i += 4 {
			dst = append(dst, math.Float32frombits(binary.LittleEndian.Uint32(f.b[i:])))
		}
		return dst, nil
	}
	return nil, malformed(where, "field %d: wire type %d for floats", f.num, f.typ)
}

// Decode reads an ONNX model (a serialized ModelProto) from r. It checks
// the model's header fields (IR version, operator sets, presence of a
// graph) before decoding the graph. A truncated input is an error wrapping
// io.ErrUnexpectedEOF, a malformed one a *FormatError.
func Decode(r io.Reader) (*ModelProto, error) {
	b, err := io.ReadAll(io.LimitReader(r, math.MaxInt32+1))
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	if len(b) > math.MaxInt32 {
		return nil, malformed("ModelProto", "larger than 2 GiB, the protobuf limit")
	}
	return Unmarshal(b)
}

// Unmarshal decodes a serialized ModelProto; see Decode.
func Unmarshal(b []byte) (*ModelProto, error) {
	const where = "ModelProto"
	m := &ModelProto{Opsets: map[string]int64{}}
	var graph []byte
	hasGraph, hasIR := false, false
	err := walk(where, b, func(f field) error {
		var err error
		switch f.num {
		case 1:
			if err = f.want(where+".ir_version", protowire.VarintType); err == nil {
				m.IRVersion, hasIR = int64(f.x), true
			}
		case 2:
			m.Producer, err = f.str(where + ".producer_name")
		case 7:
			if err = f.want(where+".graph", protowire.BytesType); err == nil {
				graph, hasGraph = f.b, true
			}
		case 8:
			if err = f.want(where+".opset_import", protowire.BytesType); err == nil {
				err = decodeOpset(f.b, m.Opsets)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	switch {
	case !hasIR:
		return nil, malformed(where, "no ir_version (not an ONNX model?)")
	case m.IRVersion < 3 || m.IRVersion > 100:
		return nil, malformed(where, "ir_version %d (want 3 or later)", m.IRVersion)
	case len(m.Opsets) == 0:
		return nil, malformed(where, "no opset_import")
	case !hasGraph:
		return nil, malformed(where, "no graph")
	}
	if m.Graph, err = decodeGraph(graph); err != nil {
		return nil, err
	}
	return m, nil
}

func decodeOpset(b []byte, dst map[string]int64) error {
	const where = "OperatorSetIdProto"
	var domain string
	var version int64
	err := walk(where, b, func(f field) error {
		var err error
		switch f.num {
		case 1:
			domain, err = f.str(where + ".domain")
		case 2:
			if err = f.want(where+".version", protowire.VarintType); err == nil {
				version = int64(f.x)
			}
		}
		return err
	})
	if domain == "ai.onnx" {
		domain = ""
	}
	dst[domain] = version
	return err
}

func decodeGraph(b []byte) (*GraphProto, error) {
	const where = "GraphProto"
	g := &GraphProto{}
	err := walk(where, b, func(f field) error {
		if f.num == 2 {
			var err error
			g.Name, err = f.str(where + ".name")
			return err
		}
		if f.num != 1 && f.num != 5 && f.num != 11 && f.num != 12 {
			return nil
		}
		if err := f.want(where, protowire.BytesType); err != nil {
			return err
		}
		switch f.num {
		case 1:
			n, err := decodeNode(f.b)
			g.Nodes = append(g.Nodes, n)
			return err
		case 5:
			t, err := decodeTensor(f.b)
			g.Initializers = append(g.Initializers, t)
			return err
		case 11:
			v, err := decodeValueInfo(f.b)
			g.Inputs = append(g.Inputs, v)
			return err
		default:
			v, err := decodeValueInfo(f.b)
			g.Outputs = append(g.Outputs, v)
			return err
		}
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

func decodeNode(b []byte) (*NodeProto, error) {
	const where = "NodeProto"
	n := &NodeProto{}
	err := walk(where, b, func(f field) error {
		var s string
		var err error
		switch f.num {
		case 1, 2, 3, 4, 7:
			if s, err = f.str(where); err != nil {
				return err
			}
		}
		switch f.num {
		case 1:
			n.Inputs = append(n.Inputs, s)
		case 2:
			n.Outputs = append(n.Outputs, s)
		case 3:
			n.Name = s
		case 4:
			n.OpType = s
		case 7:
			n.Domain = s
		case 5:
			if err = f.want(where+".attribute", protowire.BytesType); err != nil {
				return err
			}
			a, err := decodeAttribute(f.b)
			n.Attributes = append(n.Attributes, a)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n.OpType == "" {
		return nil, malformed(where, "node %q has no op_type", n.Name)
	}
	return n, nil
}

func decodeAttribute(b []byte) (*AttributeProto, error) {
	const where = "AttributeProto"
	a := &AttributeProto{}
	err := walk(where, b, func(f field) error {
		var err error
		switch f.num {
		case 1:
			a.Name, err = f.str(where + ".name")
		case 20:
			if err = f.want(where+".type", protowire.VarintType); err == nil {
				a.Type = int32(f.x)
			}
		case 2:
			if err = f.want(where+".f", protowire.Fixed32Type); err == nil {
				a.F = math.Float32frombits(uint32(f.x))
			}
		case 3:
			if err = f.want(where+".i", protowire.VarintType); err == nil {
				a.I = int64(f.x)
			}
		case 4:
			if err = f.want(where+".s", protowire.BytesType); err == nil {
				a.S = f.b
			}
		case 5:
			if err = f.want(where+".t", protowire.BytesType); err == nil {
				a.T, err = decodeTensor(f.b)
			}
		case 6, 11:
			a.Graph = true
		case 7:
			a.Floats, err = f.floats(where+".floats", a.Floats)
		case 8:
			a.Ints, err = f.ints(where+".ints", a.Ints)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if a.Type == attrGraph || a.Type == attrGraphs {
		a.Graph = true
	}
	return a, nil
}

func decodeValueInfo(b []byte) (*ValueInfoProto, error) {
	const where = "ValueInfoProto"
	v := &ValueInfoProto{}
	err := walk(where, b, func(f field) error {
		switch f.num {
		case 1:
			var err error
			v.Name, err = f.str(where + ".name")
			return err
		case 2: // TypeProto
			if err := f.want(where+".type", protowire.BytesType); err != nil {
				return err
			}
			return walk("TypeProto", f.b, func(f field) error {
				if f.num != 1 { // tensor_type; other kinds keep no shape
					return nil
				}
				if err := f.want("TypeProto.tensor_type", protowire.BytesType); err != nil {
					return err
				}
				return decodeTensorType(f.b, v)
			})
		}
		return nil
	})
	return v, err
}

func decodeTensorType(b []byte, v *ValueInfoProto) error {
	const where = "TypeProto.Tensor"
	return walk(where, b, func(f field) error {
		switch f.num {
		case 1:
			if err := f.want(where+".elem_type", protowire.VarintType); err != nil {
				return err
			}
			v.ElemType = int32(f.x)
		case 2:
			if err := f.want(where+".shape", protowire.BytesType); err != nil {
				return err
			}
			v.Dims = []Dim{}
			return walk("TensorShapeProto", f.b, func(f field) error {
				if f.num != 1 {
					return nil
				}
				if err := f.want("TensorShapeProto.dim", protowire.BytesType); err != nil {
					return err
				}
				var d Dim
				err := walk("Dimension", f.b, func(f field) error {
					var err error
					switch f.num {
					case 1:
						if err = f.want("Dimension.dim_value", protowire.VarintType); err == nil {
							d.Value = int64(f.x)
						}
					case 2:
						d.Param, err = f.str("Dimension.dim_param")
					}
					return err
				})
				v.Dims = append(v.Dims, d)
				return err
			})
		}
		return nil
	})
}

// decodeTensor decodes a TensorProto, checking its shape against the data
// it carries before converting the values.
func decodeTensor(b []byte) (*TensorProto, error) {
	const where = "TensorProto"
	t := &TensorProto{}
	var raw []byte
	hasRaw := false
	var f32 []float32
	var ints []int64
	var f64 []byte
	err := walk(where, b, func(f field) error {
		var err error
		switch f.num {
		case 1:
			t.Dims, err = f.ints(where+".dims", t.Dims)
		case 2:
			if err = f.want(where+".data_type", protowire.VarintType); err == nil {
				t.DataType = int32(f.x)
			}
		case 4:
			f32, err = f.floats(where+".float_data", f32)
		case 5, 7:
			ints, err = f.ints(where+".int_data", ints)
		case 8:
			t.Name, err = f.str(where + ".name")
		case 9:
			if err = f.want(where+".raw_data", protowire.BytesType); err == nil {
				raw, hasRaw = f.b, true
			}
		case 10:
			if err = f.want(where+".double_data", protowire.BytesType); err == nil {
				f64 = append(f64, f.b...)
			}
		case 14:
			t.External = f.x == 1
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	n := int64(1)
	for _, d := range t.Dims {
		if d < 0 || (d > 0 && n > maxTensorLn/d) {
			return nil, malformed(where, "tensor %q: dims %v", t.Name, t.Dims)
		}
		n *= d
	}
	if t.External {
		return t, nil
	}
	size := map[int32]int64{TypeFloat: 4, TypeInt32: 4, TypeInt64: 8, TypeDouble: 8}[t.DataType]
	if size == 0 {
		return t, nil // a type the importer does not compute with
	}
	count := int64(len(f32) + len(ints) + len(f64)/8)
	if hasRaw {
		count = int64(len(raw)) / size
		if int64(len(raw)) != n*size {
			return nil, malformed(where+".raw_data", "tensor %q: %d bytes for dims %v of %d-byte values", t.Name, len(raw), t.Dims, size)
		}
	}
	if count != n {
		return nil, malformed(where, "tensor %q: %d values for dims %v", t.Name, count, t.Dims)
	}
	switch {
	case t.DataType == TypeFloat && hasRaw:
		t.Floats = make([]float32, n)
		for i := range t.Floats {
			t.Floats[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case t.DataType == TypeFloat:
		t.Floats = f32
	case t.DataType == TypeDouble:
		if !hasRaw {
			raw = f64
		}
		t.Floats = make([]float32, n)
		for i := range t.Floats {
			t.Floats[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	case hasRaw:
		t.Ints = make([]int64, n)
		for i := range t.Ints {
			if size == 4 {
				t.Ints[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
			} else {
				t.Ints[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
			}
		}
	default:
		if t.DataType == TypeInt32 {
			for i, v := range ints {
				ints[i] = int64(int32(v))
			}
		}
		t.Ints = ints
	}
	return t, nil
}
