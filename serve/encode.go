package serve

import (
	"bytes"
	"fmt"
	"image/jpeg"
	"image/png"
	"mime/multipart"
	"net/textproto"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// contentTypes are the media types of the answers.
var contentTypes = map[string]string{FormatPNG: "image/png", FormatJPEG: "image/jpeg", FormatNPY: "application/x-npy"}

// encodeImages encodes the purified batch y for a request decoded as p,
// in format: one image as PNG or JPEG, several as multipart/form-data of
// PNG or JPEG parts (named as the request's parts), or one .npy of the
// request's rank. It returns the body and its Content-Type.
func encodeImages(y *tensor.Tensor, p *payload, format string, quality int) ([]byte, string, error) {
	var buf bytes.Buffer
	if format == FormatNPY {
		t := y
		if p.rank == 3 {
			t = &tensor.Tensor{Shape: y.Shape[1:], Data: y.Data}
		}
		if err := npy.Write(&buf, t); err != nil {
			return nil, "", err
		}
		return buf.Bytes(), contentTypes[FormatNPY], nil
	}
	n := y.Shape[0]
	if n == 1 && !p.multipart {
		if err := encodeImage(&buf, y, 0, format, quality); err != nil {
			return nil, "", err
		}
		return buf.Bytes(), contentTypes[format], nil
	}
	mw := multipart.NewWriter(&buf)
	for i := 0; i < n; i++ {
		name, file := fmt.Sprint(i), fmt.Sprintf("%d.%s", i, format)
		if i < len(p.names) {
			if p.names[i] != "" {
				name = p.names[i]
			}
			if p.filenames[i] != "" {
				file = p.filenames[i]
			}
		}
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, name, file))
		h.Set("Content-Type", contentTypes[format])
		w, err := mw.CreatePart(h)
		if err != nil {
			return nil, "", err
		}
		var part bytes.Buffer
		if err := encodeImage(&part, y, i, format, quality); err != nil {
			return nil, "", err
		}
		if _, err := w.Write(part.Bytes()); err != nil {
			return nil, "", err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), mw.FormDataContentType(), nil
}

// encodeImage writes image i of y as a PNG or JPEG, pixels rounded to 8
// bits.
func encodeImage(buf *bytes.Buffer, y *tensor.Tensor, i int, format string, quality int) error {
	c, h, w := y.Shape[1], y.Shape[2], y.Shape[3]
	per := c * h * w
	img, err := dataset.CHWToImage(y.Data[i*per:(i+1)*per], dataset.Shape{C: c, H: h, W: w})
	if err != nil {
		return err
	}
	if format == FormatJPEG {
		return jpeg.Encode(buf, img, &jpeg.Options{Quality: quality})
	}
	return png.Encode(buf, img)
}
