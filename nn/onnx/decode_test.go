package onnx

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func readModel(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(torchDir, name, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeErrors(t *testing.T) {
	good := readModel(t, "small_cnn")
	for _, tc := range []struct {
		name   string
		in     []byte
		eof    bool // want io.ErrUnexpectedEOF
		format bool // want a *FormatError
	}{
		{name: "empty", in: nil, format: true},
		{name: "truncated", in: good[:len(good)/2], eof: true},
		{name: "truncated tag", in: []byte{0x08}, eof: true},
		{name: "text", in: []byte("hello, world"), format: true},
		{name: "no graph", in: []byte{0x08, 0x07, 0x42, 0x02, 0x10, 0x0d}, format: true},
		{name: "ir_version as bytes", in: []byte{0x0a, 0x00}, format: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(bytes.NewReader(tc.in))
			var fe *FormatError
			switch {
			case err == nil:
				t.Fatal("no error")
			case tc.eof && !errors.Is(err, io.ErrUnexpectedEOF):
				t.Errorf("err = %v, want io.ErrUnexpectedEOF", err)
			case tc.format && !errors.As(err, &fe):
				t.Errorf("err = %v (%T), want a *FormatError", err, err)
			}
		})
	}
}

func TestImportErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(m *ModelProto)
		op     string // want an *UnsupportedError for this operator
		reason bool   // with a reason (a covered operator's unsupported case)
	}{
		{name: "unknown operator", op: "Softmax", edit: func(m *ModelProto) { m.Graph.Nodes[2].OpType = "Softmax" }},
		{name: "foreign domain", op: "com.example.Conv", edit: func(m *ModelProto) { m.Graph.Nodes[2].Domain = "com.example" }},
		{name: "auto_pad SAME", op: "Conv", reason: true, edit: func(m *ModelProto) {
			for _, n := range m.Graph.Nodes {
				if n.OpType == "Conv" {
					n.Attributes = append(n.Attributes, &AttributeProto{Name: "auto_pad", Type: AttrString, S: []byte("SAME_UPPER")})
					return
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Unmarshal(readModel(t, "small_cnn"))
			if err != nil {
				t.Fatal(err)
			}
			tc.edit(m)
			_, err = Import(m, 1)
			var ue *UnsupportedError
			if !errors.As(err, &ue) || ue.Op != tc.op || ue.Node == "" || (ue.Reason != "") != tc.reason {
				t.Fatalf("err = %v, want an UnsupportedError for %s naming the node", err, tc.op)
			}
		})
	}
}

// FuzzDecode checks that no input makes the decoder panic or return a
// model that breaks its invariants. (Importing is left out: building the
// convolution kernels of each input is too slow for fuzzing.)
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"small_cnn", "residual", "activations"} {
		f.Add(readModel(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Unmarshal(b)
		if err != nil {
			return
		}
		if m.Graph == nil || m.IRVersion < 3 || len(m.Opsets) == 0 {
			t.Fatalf("decoded a model without graph, IR version or opsets: %+v", m)
		}
		for _, init := range m.Graph.Initializers {
			n := int64(1)
			for _, d := range init.Dims {
				n *= d
			}
			if !init.External && (init.Floats != nil && int64(len(init.Floats)) != n || init.Ints != nil && int64(len(init.Ints)) != n) {
				t.Fatalf("tensor %q: %d floats, %d ints for dims %v", init.Name, len(init.Floats), len(init.Ints), init.Dims)
			}
		}
	})
}
