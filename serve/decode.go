package serve

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// Error kinds: the "kind" of a JSON error answer and the label of the
// errors metric.
const (
	KindBadRequest    = "bad_request"     // malformed request (multipart, query)
	KindNotImage      = "not_image"       // the body is not a PNG, JPEG or .npy, or is corrupt
	KindWrongSize     = "wrong_size"      // image or array of another shape than the service takes
	KindNonFinite     = "non_finite"      // NaN or infinity in a .npy
	KindOutOfRange    = "out_of_range"    // a .npy value outside [0, 1]
	KindTooLarge      = "too_large"       // body over --max-body or image side over --max-side
	KindTooManyImages = "too_many_images" // more images than --max-images
	KindNoClassifier  = "no_classifier"   // /v1/classify on a service without one
	KindMethod        = "method"          // wrong HTTP method
	KindQueueFull     = "queue_full"      // 429: the queue holds --queue images
	KindTimeout       = "timeout"         // 503: --timeout passed
	KindCancelled     = "cancelled"       // the client went away
	KindShuttingDown  = "shutting_down"   // 503: the service is draining
	KindInternal      = "internal"        // 500: a failure of the service itself
)

// RequestError is an answer other than success: the HTTP status, a kind
// (Kind* constants) and a message naming the problem.
type RequestError struct {
	Status int
	Kind   string
	Msg    string
}

func (e *RequestError) Error() string { return e.Msg }

func reqErr(status int, kind, format string, a ...any) *RequestError {
	return &RequestError{Status: status, Kind: kind, Msg: fmt.Sprintf(format, a...)}
}

// ImageSpec is the image shape the service takes: Channels channels (1 or
// 3 for PNG and JPEG input) of Side x Side pixels. Side 0 takes any size
// up to Options.MaxSide, one size per request.
type ImageSpec struct {
	Channels, Side int
}

// Image formats, as named by the format query parameter.
const (
	FormatPNG  = "png"
	FormatJPEG = "jpeg"
	FormatNPY  = "npy"
)

// payload is a decoded request: its images and how to answer in kind.
type payload struct {
	x *tensor.Tensor // (N, C, H, W), pixels in [0, 1]
	// format is the input's format; multipart reports a multipart batch,
	// whose parts are named by names and filenames.
	format           string
	multipart        bool
	names, filenames []string
	// rank is the .npy input's rank: 3 for one image (C, H, W), 4 for a
	// batch.
	rank int
}

var (
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
	jpegMagic = []byte("\xff\xd8\xff")
	npyMagic  = []byte("\x93NUMPY")
)

// sniff names the format of b from its first bytes, "" when unknown.
func sniff(b []byte) string {
	switch {
	case bytes.HasPrefix(b, pngMagic):
		return FormatPNG
	case bytes.HasPrefix(b, jpegMagic):
		return FormatJPEG
	case bytes.HasPrefix(b, npyMagic):
		return FormatNPY
	}
	return ""
}

// decodeRequest decodes a request body of the given Content-Type: one PNG
// or JPEG image, a .npy array (C, H, W) or (N, C, H, W), or a
// multipart/form-data batch of PNG/JPEG images (one per part). The format
// is read from the bytes, not the Content-Type, except for multipart. It
// checks every limit of o and the shape spec before decoding pixels and
// returns a *RequestError for any bad input.
func decodeRequest(contentType string, body []byte, spec ImageSpec, o Options) (*payload, error) {
	if mt, params, err := mime.ParseMediaType(contentType); err == nil && mt == "multipart/form-data" {
		return decodeMultipart(body, params["boundary"], spec, o)
	}
	switch sniff(body) {
	case FormatNPY:
		return decodeNPY(body, spec, o)
	case FormatPNG, FormatJPEG:
		x, format, err := decodeImage(body, spec, o, "the body")
		if err != nil {
			return nil, err
		}
		return &payload{x: x, format: format}, nil
	}
	if len(body) == 0 {
		return nil, reqErr(http.StatusBadRequest, KindNotImage, "empty body: send a PNG, JPEG or .npy image")
	}
	return nil, reqErr(http.StatusUnsupportedMediaType, KindNotImage, "the body is not a PNG, JPEG or .npy image (it starts with %q)", head(body))
}

// head is the first bytes of b, for messages.
func head(b []byte) string { return string(b[:min(len(b), 8)]) }

// decodeImage decodes one PNG or JPEG image into a (1, C, H, W) tensor;
// what names it in messages.
func decodeImage(b []byte, spec ImageSpec, o Options, what string) (*tensor.Tensor, string, error) {
	format := sniff(b)
	if format != FormatPNG && format != FormatJPEG {
		return nil, "", reqErr(http.StatusUnsupportedMediaType, KindNotImage, "%s is not a PNG or JPEG image (it starts with %q)", what, head(b))
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, "", reqErr(http.StatusBadRequest, KindNotImage, "%s: corrupt %s header: %v", what, strings.ToUpper(format), err)
	}
	if err := checkSide(cfg.Width, cfg.Height, spec, o, what); err != nil {
		return nil, "", err
	}
	if spec.Channels != 1 && spec.Channels != 3 {
		return nil, "", reqErr(http.StatusUnprocessableEntity, KindWrongSize, "%s: the service takes %d-channel images, send them as .npy", what, spec.Channels)
	}
	var img image.Image
	if format == FormatPNG {
		img, err = png.Decode(bytes.NewReader(b))
	} else {
		img, err = jpeg.Decode(bytes.NewReader(b))
	}
	if err != nil {
		return nil, "", reqErr(http.StatusBadRequest, KindNotImage, "%s: corrupt %s image: %v", what, strings.ToUpper(format), err)
	}
	w, h := cfg.Width, cfg.Height
	rgb := make([]float32, 3*h*w)
	if err := dataset.ImageToCHW(rgb, img, 0); err != nil {
		return nil, "", reqErr(http.StatusBadRequest, KindNotImage, "%s: %v", what, err)
	}
	if spec.Channels == 3 {
		return &tensor.Tensor{Shape: []int{1, 3, h, w}, Data: rgb}, format, nil
	}
	gray := make([]float32, h*w)
	for i := range gray {
		gray[i] = (rgb[i] + rgb[h*w+i] + rgb[2*h*w+i]) / 3
	}
	return &tensor.Tensor{Shape: []int{1, 1, h, w}, Data: gray}, format, nil
}

// checkSide checks an image's width and height against MaxSide and the
// spec.
func checkSide(w, h int, spec ImageSpec, o Options, what string) error {
	switch {
	case w < 1 || h < 1:
		return reqErr(http.StatusUnprocessableEntity, KindWrongSize, "%s is an empty %dx%d image", what, w, h)
	case w > o.MaxSide || h > o.MaxSide:
		return reqErr(http.StatusRequestEntityTooLarge, KindTooLarge, "%s is %dx%d pixels, over the limit of %d per side (--max-side)", what, w, h, o.MaxSide)
	case spec.Side > 0 && (w != spec.Side || h != spec.Side):
		return reqErr(http.StatusUnprocessableEntity, KindWrongSize, "%s is %dx%d pixels, and the service takes %dx%d images", what, w, h, spec.Side, spec.Side)
	}
	return nil
}

// decodeNPY decodes a float .npy array of one image (C, H, W) or a batch
// (N, C, H, W), pixels in [0, 1].
func decodeNPY(b []byte, spec ImageSpec, o Options) (*payload, error) {
	h, err := npy.ReadHeader(bytes.NewReader(b))
	if err != nil {
		return nil, npyErr(err)
	}
	shape := h.Shape
	rank := len(shape)
	if rank == 3 {
		shape = append([]int{1}, shape...)
	}
	if len(shape) != 4 {
		return nil, reqErr(http.StatusUnprocessableEntity, KindWrongSize, ".npy of shape %v: want one image (C, H, W) or a batch (N, C, H, W)", h.Shape)
	}
	n, c := shape[0], shape[1]
	switch {
	case n < 1:
		return nil, reqErr(http.StatusUnprocessableEntity, KindWrongSize, ".npy of shape %v holds no image", h.Shape)
	case n > o.MaxImages:
		return nil, reqErr(http.StatusRequestEntityTooLarge, KindTooManyImages, ".npy of %d images, over the limit of %d per request (--max-images)", n, o.MaxImages)
	case c != spec.Channels:
		return nil, reqErr(http.StatusUnprocessableEntity, KindWrongSize, ".npy of shape %v: %d channels, and the service takes %d", h.Shape, c, spec.Channels)
	}
	if err := checkSide(shape[3], shape[2], spec, o, fmt.Sprintf(".npy of shape %v", h.Shape)); err != nil {
		return nil, err
	}
	x, err := npy.Read(bytes.NewReader(b))
	if err != nil {
		return nil, npyErr(err)
	}
	x.Shape = shape
	per := x.Len() / n
	for i, v := range x.Data {
		switch {
		case math.IsNaN(float64(v)) || math.IsInf(float64(v), 0):
			return nil, reqErr(http.StatusUnprocessableEntity, KindNonFinite, ".npy image %d holds %g at index %d: every value must be finite", i/per, v, i%per)
		case v < 0 || v > 1:
			return nil, reqErr(http.StatusUnprocessableEntity, KindOutOfRange, ".npy image %d holds %g at index %d, outside [0, 1]: scale pixels to [0, 1] (8-bit values divided by 255)", i/per, v, i%per)
		}
	}
	return &payload{x: x, format: FormatNPY, rank: rank}, nil
}

// npyErr turns an npy decoding error into a *RequestError.
func npyErr(err error) error {
	var fe *npy.FormatError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return reqErr(http.StatusBadRequest, KindNotImage, "truncated .npy: the data is shorter than its header says")
	case errors.As(err, &fe):
		return reqErr(http.StatusBadRequest, KindNotImage, "malformed .npy: %v", err)
	}
	return reqErr(http.StatusBadRequest, KindNotImage, ".npy: %v", err)
}

// decodeMultipart decodes a multipart/form-data batch: every part with a
// body is one PNG or JPEG image, all of one size.
func decodeMultipart(b []byte, boundary string, spec ImageSpec, o Options) (*payload, error) {
	if boundary == "" {
		return nil, reqErr(http.StatusBadRequest, KindBadRequest, "multipart/form-data without a boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(b), boundary)
	p := &payload{multipart: true}
	var images []*tensor.Tensor
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, reqErr(http.StatusBadRequest, KindBadRequest, "malformed multipart body: %v", err)
		}
		data, err := io.ReadAll(part)
		if err != nil {
			return nil, reqErr(http.StatusBadRequest, KindBadRequest, "malformed multipart body: part %d: %v", len(images), err)
		}
		if len(images) == o.MaxImages {
			return nil, reqErr(http.StatusRequestEntityTooLarge, KindTooManyImages, "more than %d images in the request (--max-images)", o.MaxImages)
		}
		what := fmt.Sprintf("part %d (%q)", len(images), part.FormName())
		x, format, err := decodeImage(data, spec, o, what)
		if err != nil {
			return nil, err
		}
		if len(images) > 0 && !tensor.SameShape(x, images[0]) {
			return nil, reqErr(http.StatusUnprocessableEntity, KindWrongSize, "%s is %dx%d pixels, and part 0 %dx%d: the images of a request must have one size",
				what, x.Shape[3], x.Shape[2], images[0].Shape[3], images[0].Shape[2])
		}
		if p.format == "" {
			p.format = format
		}
		images = append(images, x)
		p.names = append(p.names, part.FormName())
		p.filenames = append(p.filenames, part.FileName())
	}
	if len(images) == 0 {
		return nil, reqErr(http.StatusBadRequest, KindNotImage, "multipart body without an image part")
	}
	s := images[0].Shape
	p.x = tensor.New(len(images), s[1], s[2], s[3])
	per := images[0].Len()
	for i, x := range images {
		copy(p.x.Data[i*per:], x.Data)
	}
	return p, nil
}
