package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

const side = 8

// halve pulls pixels half-way to 0.5: a deterministic stand-in for the
// projection. With gate set, Apply waits for it to close (or its context
// to end); started receives each batch's size as Apply begins.
type halve struct {
	gate    chan struct{}
	started chan int
	mu      sync.Mutex
	sizes   []int
}

func (*halve) Name() string     { return "half" }
func (*halve) Randomized() bool { return false }
func (h *halve) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	h.mu.Lock()
	h.sizes = append(h.sizes, x.Shape[0])
	h.mu.Unlock()
	if h.started != nil {
		h.started <- x.Shape[0]
	}
	if h.gate != nil {
		select {
		case <-h.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	y := x.Clone()
	for i, v := range y.Data {
		y.Data[i] = 0.25 + v/2
	}
	return y, nil
}

// meanModel's logit k is k times the image's mean.
type meanModel struct{}

func (meanModel) InputShape() (int, int, int) { return 3, side, side }
func (meanModel) NumClasses() int             { return 4 }
func (meanModel) Logits(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	n := x.Shape[0]
	per := x.Len() / n
	z := tensor.New(n, 4)
	for i := 0; i < n; i++ {
		var m float32
		for _, v := range x.Data[i*per : (i+1)*per] {
			m += v
		}
		m /= float32(per)
		for k := 0; k < 4; k++ {
			z.Data[i*4+k] = float32(k) * (m - 0.5)
		}
	}
	return z, nil
}
func (meanModel) InputGrad(context.Context, *tensor.Tensor, func(l, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	return nil, nil, errors.New("not used")
}

// newTestServer starts a Server around d (with the classifier when clf)
// under httptest; edit changes the default options.
func newTestServer(t *testing.T, d *halve, clf bool, edit func(*Options)) (*Server, *httptest.Server) {
	t.Helper()
	o := DefaultOptions()
	o.BatchWindow = time.Millisecond
	if edit != nil {
		edit(&o)
	}
	cfg := Config{Defense: d, Spec: ImageSpec{Channels: 3, Side: side}, Options: o}
	if clf {
		cfg.Classifier = meanModel{}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return s, ts
}

// testImage is a gradient image of the given size.
func testImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(30 * x), uint8(30 * y), 200, 255})
		}
	}
	return img
}

func pngBytes(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, testImage(w, h)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func jpegBytes(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, testImage(w, h), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func npyBytes(t testing.TB, x *tensor.Tensor) []byte {
	var b bytes.Buffer
	if err := npy.Write(&b, x); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// multipartBytes is a multipart/form-data body of the given parts and its
// Content-Type.
func multipartBytes(t testing.TB, parts ...[]byte) ([]byte, string) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for i, p := range parts {
		w, err := mw.CreateFormFile("image", string(rune('a'+i))+".png")
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p)
	}
	mw.Close()
	return b.Bytes(), mw.FormDataContentType()
}

// seeded is a (n, 3, side, side) batch of values in [0, 1].
func seeded(n int) *tensor.Tensor {
	x := tensor.New(n, 3, side, side)
	for i := range x.Data {
		x.Data[i] = float32(i%97) / 96
	}
	return x
}

func post(t testing.TB, url, ctype string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(url, ctype, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestPurifyFormats(t *testing.T) {
	_, ts := newTestServer(t, &halve{}, false, nil)
	url := ts.URL + "/v1/purify"

	// One PNG: a PNG of the same size, every pixel halved towards 0.5.
	resp, body := post(t, url, "image/png", pngBytes(t, side, side))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("PNG: %s %q %s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	img, err := png.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r, g, _, _ := img.At(3, 2).RGBA()
	if wr, wg := 0.25+float64(90)/255/2, 0.25+float64(60)/255/2; math.Abs(float64(r>>8)/255-wr) > 1.0/255 || math.Abs(float64(g>>8)/255-wg) > 1.0/255 {
		t.Errorf("pixel (3, 2) = %d, %d; want %.3f, %.3f", r>>8, g>>8, wr, wg)
	}

	// One JPEG: a JPEG.
	resp, body = post(t, url, "image/jpeg", jpegBytes(t, side, side))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("JPEG: %s %s", resp.Status, body)
	}
	if _, err := jpeg.Decode(bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}

	// .npy of one image (C, H, W) and of a batch: the same shapes, exact values.
	for _, x := range []*tensor.Tensor{{Shape: []int{3, side, side}, Data: seeded(1).Data}, seeded(5)} {
		resp, body = post(t, url, "application/octet-stream", npyBytes(t, x))
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-npy" {
			t.Fatalf("npy %v: %s %s", x.Shape, resp.Status, body)
		}
		y, err := npy.Read(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if !tensor.SameShape(x, y) {
			t.Fatalf("npy %v answered %v", x.Shape, y.Shape)
		}
		for i, v := range y.Data {
			if v != 0.25+x.Data[i]/2 {
				t.Fatalf("npy %v: value %d = %g, want %g", x.Shape, i, v, 0.25+x.Data[i]/2)
			}
		}
	}

	// A multipart batch of three PNGs: three PNG parts, named as sent; and
	// the same batch as one .npy with format=npy.
	mp, ctype := multipartBytes(t, pngBytes(t, side, side), pngBytes(t, side, side), pngBytes(t, side, side))
	resp, body = post(t, url, ctype, mp)
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != 200 || err != nil || mt != "multipart/form-data" {
		t.Fatalf("multipart: %s %q %s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			if i != 3 {
				t.Errorf("%d parts, want 3", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if want := string(rune('a'+i)) + ".png"; p.FileName() != want || p.FormName() != "image" || p.Header.Get("Content-Type") != "image/png" {
			t.Errorf("part %d: %q %q %q", i, p.FormName(), p.FileName(), p.Header.Get("Content-Type"))
		}
		if _, err := png.Decode(p); err != nil {
			t.Errorf("part %d: %v", i, err)
		}
	}
	resp, body = post(t, url+"?format=npy", ctype, mp)
	if y, err := npy.Read(bytes.NewReader(body)); resp.StatusCode != 200 || err != nil || !slices.Equal(y.Shape, []int{3, 3, side, side}) {
		t.Errorf("multipart as npy: %s, %v", resp.Status, err)
	}
}

func TestClassify(t *testing.T) {
	_, ts := newTestServer(t, &halve{}, true, nil)
	x := seeded(3)
	resp, body := post(t, ts.URL+"/v1/classify", "application/x-npy", npyBytes(t, x))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s %s", resp.Status, body)
	}
	var got ClassifyResponse
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Defense != "half" || len(got.Images) != 3 {
		t.Fatalf("%s", body)
	}
	per := 3 * side * side
	for i, c := range got.Images {
		var mean, mse float64
		for _, v := range x.Data[i*per : (i+1)*per] {
			y := 0.25 + float64(v)/2
			mean += y
			mse += (y - float64(v)) * (y - float64(v))
		}
		mean /= float64(per)
		mse /= float64(per)
		wantLabel := 3
		if mean < 0.5 {
			wantLabel = 0
		}
		if len(c.Logits) != 4 || c.Label != wantLabel || math.Abs(float64(c.Logits[1])-(mean-0.5)) > 1e-5 {
			t.Errorf("image %d: %+v, mean %g", i, c, mean)
		}
		if want := 10 * math.Log10(1/mse); math.Abs(c.PSNR-want) > 1e-3 {
			t.Errorf("image %d: PSNR %g, want %g", i, c.PSNR, want)
		}
	}

	// Without a classifier, /v1/classify is a 404 saying so.
	_, bare := newTestServer(t, &halve{}, false, nil)
	resp, body = post(t, bare.URL+"/v1/classify", "image/png", pngBytes(t, side, side))
	checkError(t, resp, body, http.StatusNotFound, KindNoClassifier, "without a classifier")
}

// checkError checks an error answer's status and JSON body.
func checkError(t *testing.T, resp *http.Response, body []byte, status int, kind, msg string) {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("status %d, body %q: %v", resp.StatusCode, body[:min(len(body), 200)], err)
	}
	if resp.StatusCode != status || e.Kind != kind || !strings.Contains(e.Error, msg) || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("got %d %+v, want %d %s containing %q", resp.StatusCode, e, status, kind, msg)
	}
}

func TestBadInput(t *testing.T) {
	_, ts := newTestServer(t, &halve{}, true, func(o *Options) {
		o.MaxBodyBytes, o.MaxSide, o.MaxImages = 4000, 16, 4
	})
	nan := seeded(2)
	nan.Data[3*side*side+7] = float32(math.NaN())
	inf := seeded(1)
	inf.Data[0] = float32(math.Inf(1))
	big := seeded(1)
	big.Data[5] = 255
	trunc := npyBytes(t, seeded(1))
	trunc = trunc[:len(trunc)-10]
	corrupt := pngBytes(t, side, side)
	corrupt = append(corrupt[:60:60], make([]byte, 40)...)
	mixed, mixedType := multipartBytes(t, pngBytes(t, side, side), pngBytes(t, 4, 4))
	tooMany, tooManyType := multipartBytes(t, pngBytes(t, side, side), pngBytes(t, side, side), pngBytes(t, side, side), pngBytes(t, side, side), pngBytes(t, side, side))
	textPart, textPartType := multipartBytes(t, []byte("hello"))
	for _, tc := range []struct {
		name, path, ctype string
		body              []byte
		status            int
		kind, msg         string
	}{
		{"text", "purify", "text/plain", []byte("hello, world"), 415, KindNotImage, "not a PNG, JPEG or .npy"},
		{"empty", "purify", "image/png", nil, 400, KindNotImage, "empty body"},
		{"wrong size PNG", "purify", "image/png", pngBytes(t, 12, 10), 422, KindWrongSize, "12x10 pixels, and the service takes 8x8"},
		{"side over the limit", "classify", "image/png", pngBytes(t, 17, 17), 413, KindTooLarge, "--max-side"},
		{"body over the limit", "purify", "application/x-npy", bytes.Repeat([]byte("x"), 5000), 413, KindTooLarge, "exceeds 4000 bytes"},
		{"NaN", "purify", "application/x-npy", npyBytes(t, nan), 422, KindNonFinite, "image 1 holds NaN at index 7"},
		{"infinity", "classify", "application/x-npy", npyBytes(t, inf), 422, KindNonFinite, "+Inf"},
		{"8-bit values", "purify", "application/x-npy", npyBytes(t, big), 422, KindOutOfRange, "outside [0, 1]"},
		{"npy rank", "purify", "application/x-npy", npyBytes(t, tensor.New(3, side*side)), 422, KindWrongSize, "want one image (C, H, W) or a batch"},
		{"npy channels", "purify", "application/x-npy", npyBytes(t, tensor.New(1, 1, side, side)), 422, KindWrongSize, "1 channels, and the service takes 3"},
		{"npy size", "purify", "application/x-npy", npyBytes(t, tensor.New(1, 3, 4, 4)), 422, KindWrongSize, "4x4 pixels"},
		{"npy empty", "purify", "application/x-npy", npyBytes(t, tensor.New(0, 3, side, side)), 422, KindWrongSize, "holds no image"},
		{"npy too many", "purify", "application/x-npy", npyBytes(t, tensor.New(5, 3, 2, 2)), 413, KindTooManyImages, "--max-images"},
		{"npy truncated", "purify", "application/x-npy", trunc, 400, KindNotImage, "truncated .npy"},
		{"npy header", "purify", "application/x-npy", []byte("\x93NUMPY\x01\x00\x10\x00{'descr': '<c8'}"), 400, KindNotImage, "malformed .npy"},
		{"corrupt PNG", "purify", "image/png", corrupt, 400, KindNotImage, "corrupt PNG"},
		{"multipart sizes", "purify", mixedType, mixed, 422, KindWrongSize, "part 1"},
		{"multipart too many", "purify", tooManyType, tooMany, 413, KindTooManyImages, "more than 4 images"},
		{"multipart text part", "purify", textPartType, textPart, 415, KindNotImage, `part 0 ("image") is not a PNG or JPEG`},
		{"multipart no boundary", "purify", "multipart/form-data", []byte("--x\r\n"), 400, KindBadRequest, "without a boundary"},
		{"multipart malformed", "purify", "multipart/form-data; boundary=zz", []byte("garbage"), 400, KindBadRequest, "malformed multipart"},
		{"format", "purify?format=gif", "image/png", pngBytes(t, side, side), 400, KindBadRequest, `format="gif"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, ts.URL+"/v1/"+tc.path, tc.ctype, tc.body)
			checkError(t, resp, body, tc.status, tc.kind, tc.msg)
		})
	}
	resp, err := http.Get(ts.URL + "/v1/purify")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkError(t, resp, body, http.StatusMethodNotAllowed, KindMethod, "use POST")
	if n := metricValue(t, ts.URL, `stl_serve_errors_total{kind="not_image"}`); n != 6 {
		t.Errorf("%g not_image errors counted, want 6", n)
	}
	if n := metricValue(t, ts.URL, `stl_serve_requests_total{code="422",endpoint="purify"}`); n != 8 {
		t.Errorf("%g 422 answers counted on purify, want 8", n)
	}
}
