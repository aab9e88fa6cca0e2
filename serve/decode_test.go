package serve

import (
	"errors"
	"math"
	"testing"
)

// FuzzDecodeRequest feeds the request decoder arbitrary bodies, as such
// and as multipart parts: it must never panic, refuse with a 4xx
// *RequestError, and accept only a batch of the service's shape within
// the limits, pixels in [0, 1].
func FuzzDecodeRequest(f *testing.F) {
	o := DefaultOptions()
	o.MaxImages, o.MaxSide = 4, 64
	spec := ImageSpec{Channels: 3, Side: side}
	mp, mpType := multipartBytes(f, pngBytes(f, side, side), jpegBytes(f, side, side))
	for _, seed := range []struct {
		ctype string
		body  []byte
	}{
		{"image/png", pngBytes(f, side, side)},
		{"image/png", pngBytes(f, 3, 5)},
		{"image/jpeg", jpegBytes(f, side, side)},
		{"application/x-npy", npyBytes(f, seeded(2))},
		{"application/x-npy", npyBytes(f, seeded(1))[:90]},
		{mpType, mp},
		{"", []byte("\x93NUMPY\x01\x00\x10\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 8, 8), }")},
		{"text/plain", []byte("hello")},
	} {
		f.Add(seed.ctype, seed.body)
	}
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		p, err := decodeRequest(ctype, body, spec, o)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) || re.Status < 400 || re.Status >= 500 || re.Kind == "" || re.Msg == "" {
				t.Fatalf("error %T %v: want a 4xx *RequestError", err, err)
			}
			return
		}
		s := p.x.Shape
		if len(s) != 4 || s[0] < 1 || s[0] > o.MaxImages || s[1] != 3 || s[2] != side || s[3] != side || len(p.x.Data) != s[0]*s[1]*s[2]*s[3] {
			t.Fatalf("accepted shape %v", s)
		}
		for i, v := range p.x.Data {
			if !(v >= 0 && v <= 1) || math.IsNaN(float64(v)) {
				t.Fatalf("accepted value %g at %d", v, i)
			}
		}
		if p.format == "" || (p.multipart && len(p.names) != s[0]) {
			t.Fatalf("payload %+v", p)
		}
	})
}
