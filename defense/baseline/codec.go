package baseline

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// This file holds the binary encoding the saved baselines share: float32
// arrays, the magic-prefixed header and loading from a file.

// f32Chunk is how many values writeFloat32s and readFloat32s move per I/O
// call, so neither needs a byte buffer as large as the array.
const f32Chunk = 4096

// writeFloat32s writes v as little-endian float32 values.
func writeFloat32s(w io.Writer, v []float32) error {
	buf := make([]byte, 4*min(len(v), f32Chunk))
	for start := 0; start < len(v); start += f32Chunk {
		chunk := v[start:min(start+f32Chunk, len(v))]
		for i, x := range chunk {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
		}
		if _, err := w.Write(buf[:4*len(chunk)]); err != nil {
			return err
		}
	}
	return nil
}

// readFloat32s fills dst with little-endian float32 values from r. A
// truncated input returns io.ErrUnexpectedEOF.
func readFloat32s(r io.Reader, dst []float32) error {
	buf := make([]byte, 4*min(len(dst), f32Chunk))
	for start := 0; start < len(dst); start += f32Chunk {
		chunk := dst[start:min(start+f32Chunk, len(dst))]
		if _, err := io.ReadFull(r, buf[:4*len(chunk)]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		for i := range chunk {
			chunk[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
		}
	}
	return nil
}

// readFloat32sGrow reads n little-endian float32 values from r into a
// slice that grows as they arrive, so that a header announcing many values
// in front of a short stream costs the memory of what the stream holds, not
// of what it announces. A short stream gives io.ErrUnexpectedEOF.
func readFloat32sGrow(r io.Reader, n int) ([]float32, error) {
	var out []float32
	for len(out) < n {
		chunk := make([]float32, min(n-len(out), f32Chunk))
		if err := readFloat32s(r, chunk); err != nil {
			return nil, err
		}
		out = append(out, chunk...)
	}
	return out, nil
}

// readHeader fills hdr from r and checks that it starts with magic. A
// truncated header gives an error wrapping io.ErrUnexpectedEOF, another
// magic one wrapping errFormat; what names the file's content.
func readHeader(r io.Reader, hdr []byte, magic, what string, errFormat error) error {
	if _, err := io.ReadFull(r, hdr); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%s header: %w", what, err)
	}
	if string(hdr[:len(magic)]) != magic {
		return fmt.Errorf("%w: bad magic %q", errFormat, hdr[:len(magic)])
	}
	return nil
}

// loadFile decodes the file at path with decode; decoding errors are
// prefixed with the path.
func loadFile[T any](path string, decode func(io.Reader) (*T, error)) (*T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	v, err := decode(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}
